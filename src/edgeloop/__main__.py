"""`python -m edgeloop`: the `edgeloop` command, for environments without the console script."""

from edgeloop.cli.main import run

run()

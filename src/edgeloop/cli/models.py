"""`edgeloop models`: package, register, inspect, promote, sign and verify model versions."""

from __future__ import annotations

import typer

app = typer.Typer(help="Package, register, inspect, promote, sign and verify models.", no_args_is_help=True)

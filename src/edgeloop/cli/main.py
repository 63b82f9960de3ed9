"""The `edgeloop` command: each noun lives in its own module and is registered here."""

from __future__ import annotations

import logging

import typer

from edgeloop import __version__
from edgeloop.cli import core as core_cmd
from edgeloop.cli import demo as demo_cmd
from edgeloop.cli import drift, journal, models
from edgeloop.cli import fleet as fleet_cmd
from edgeloop.cli import init as init_cmd
from edgeloop.cli import pipeline as pipeline_cmd
from edgeloop.cli import replicate as replicate_cmd
from edgeloop.cli import serve as serve_cmd
from edgeloop.cli import store as store_cmd
from edgeloop.cli import tokens as tokens_cmd
from edgeloop.cli.audit import audit as audit_cmd
from edgeloop.settings import get_settings

app = typer.Typer(
    name="edgeloop",
    help="edgeloop: serve models at the edge, capture data, replicate it to the core, retrain, "
    "sign and roll out, in one loop.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeloop {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """edgeloop: the MLOps continuum from edge to cloud."""
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


app.command("init")(init_cmd.init)
app.command("demo")(demo_cmd.demo)
app.add_typer(journal.app, name="journal")
app.add_typer(models.app, name="models")
app.command("serve")(serve_cmd.serve)
app.add_typer(replicate_cmd.app, name="replicate")
app.add_typer(drift.app, name="drift")
app.add_typer(store_cmd.app, name="store")
app.command("quality")(drift.quality)
app.add_typer(fleet_cmd.app, name="fleet")
app.add_typer(tokens_cmd.app, name="tokens")
app.command("audit")(audit_cmd)
app.add_typer(pipeline_cmd.app, name="pipeline")
app.command("core")(core_cmd.core)


def run() -> None:
    """Console-script entry point."""
    app()

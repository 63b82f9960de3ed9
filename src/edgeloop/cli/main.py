"""The `edgeloop` command: each noun lives in its own module and is registered here."""

from __future__ import annotations

import logging

import typer

from edgeloop import __version__
from edgeloop.cli.lazy import LazyCommand, lazy_group
from edgeloop.errors import ConfigError
from edgeloop.settings import get_settings

# Each noun's module is imported only when that noun runs (so `edgeloop replicate` does not
# load serving or fleet code); `edgeloop --help` shows these summaries without importing.
COMMANDS = {
    "init": LazyCommand(
        "edgeloop.cli.init:init",
        "Create a workspace: edgeloop.yaml with a core and two edge sites on directory stores.",
    ),
    "demo": LazyCommand(
        "edgeloop.cli.demo:demo",
        "Run the whole loop on this machine: a core and two edge sites as separate processes.",
    ),
    "serve": LazyCommand(
        "edgeloop.cli.serve:serve",
        "Serve models over the Open Inference Protocol v2 (REST) with hot swap and capture.",
    ),
    "quality": LazyCommand(
        "edgeloop.cli.drift:quality",
        "Score live quality (accuracy, F1 or MAE) per site, version and time bucket from labels.",
    ),
    "audit": LazyCommand(
        "edgeloop.cli.audit:audit", "Show who changed what, when and from where (admins only)."
    ),
    "core": LazyCommand(
        "edgeloop.cli.core:core",
        "Run the core: watch the core journal for trigger events, run pipelines, register "
        "models, and judge drift and live quality of the captured data.",
    ),
    "agent": LazyCommand(
        "edgeloop.cli.agent:agent",
        "Run the edge agent of a site: signed desired state in, verified hot swaps, runbooks.",
    ),
    "journal": LazyCommand("edgeloop.cli.journal:app", "Read a site's event journal."),
    "models": LazyCommand(
        "edgeloop.cli.models:app", "Package, register, inspect, promote, sign and verify models."
    ),
    "replicate": LazyCommand(
        "edgeloop.cli.replicate:app",
        "Copy objects between stores: verified by SHA-256, resumable after a crash, each copy "
        "reported as an object.replicated event.",
    ),
    "drift": LazyCommand(
        "edgeloop.cli.drift:app", "Reference profiles and drift reports over captured data."
    ),
    "store": LazyCommand(
        "edgeloop.cli.store:app",
        "List, upload, download, print and delete objects in a store (file://, s3:// or a "
        "workspace site's store).",
    ),
    "fleet": LazyCommand(
        "edgeloop.cli.fleet:app",
        "Manage the fleet on the control plane: sites, join tokens, deployments, rollouts.",
    ),
    "tokens": LazyCommand(
        "edgeloop.cli.tokens:app", "Create, list and revoke API tokens of the control plane."
    ),
    "pipeline": LazyCommand(
        "edgeloop.cli.pipeline:app", "Run pipelines, list their runs, compile them for Kubeflow."
    ),
    "up": LazyCommand(
        "edgeloop.cli.up:up",
        "Start every component of the workspace and supervise them until Ctrl-C or SIGTERM.",
    ),
    "status": LazyCommand(
        "edgeloop.cli.up:status",
        "Show the processes of a running `edgeloop up`: pid, port, up/down, restarts, health.",
    ),
    "down": LazyCommand(
        "edgeloop.cli.up:down", "Stop the `edgeloop up` running for the workspace and wait."
    ),
}

app = typer.Typer(
    cls=lazy_group(COMMANDS),
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
    try:
        settings = get_settings()
    except ConfigError as exc:  # a bad EDGELOOP_* variable: say which, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)


# One INFO line per HTTP request: an agent polling its control plane fills its log with them.
QUIET_LOGGERS = ("httpx", "httpcore")


def configure_logging(level: str) -> None:
    """Log at `level` (EDGELOOP_LOG_LEVEL); HTTP client request lines only at DEBUG."""
    level = level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet = logging.NOTSET if level == "DEBUG" else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


def run() -> None:
    """Console-script entry point."""
    app()

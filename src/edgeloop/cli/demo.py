"""`edgeloop demo`: the loop on this machine on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeloop.cli.common import console, friendly_errors


def demo(
    directory: Path = typer.Option(
        Path("demo-workspace"), "--dir", "-d", help="Workspace to (re)create for the demo."
    ),
    batches: int = typer.Option(20, "--batches", min=1, help="Capture batches per edge site."),
    rows: int = typer.Option(500, "--rows", min=1, help="Rows per batch."),
) -> None:
    """Run the demo: a core and two edges, capture batches at the edges, replicated to the core.

    The demo recreates --dir each time. It grows with edgeloop: later releases add serving,
    retraining and rollout to the same command.
    """
    from edgeloop.demo.foundation import run_foundation_demo

    with friendly_errors():
        result = run_foundation_demo(directory, batches=batches, rows=rows, console=console)
    if not result.verified or result.at_core != sum(result.written.values()):
        raise typer.Exit(1)

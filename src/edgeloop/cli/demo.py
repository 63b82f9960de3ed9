"""`edgeloop demo`: the loop on this machine on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeloop.cli.common import console, friendly_errors


def demo(
    directory: Path = typer.Option(
        Path("demo-workspace"), "--dir", "-d", help="Workspace to (re)create for the demo."
    ),
    duration: float = typer.Option(
        None,
        "--duration",
        min=10.0,
        help="Seconds of traffic at most (default 240, or 90 with --fast).",
        show_default=False,
    ),
    fast: bool = typer.Option(
        False,
        "--fast",
        help="Small data, short waits; ends as soon as the new version serves everywhere.",
    ),
    free_ports: bool = typer.Option(
        False, "--free-ports", help="Use free ports instead of 8700/8101/8102."
    ),
) -> None:
    """Run the whole loop on this machine: a core and two edge sites as separate processes.

    Version 1 of a model is trained and rolled out; traffic with late labels runs at each
    edge; after a while the data drifts at edge-b. Then the loop runs by itself: capture,
    replicate, trigger, retrain, gate, register and sign, roll out in waves, hot swap. A
    timeline shows each step; a summary ends the run. --dir is recreated each time. Exits 1
    when the loop did not close (no new version everywhere, a failed request, a lost or
    duplicated capture).
    """
    from edgeloop.demo.run import run_demo
    from edgeloop.demo.workspace import DemoSettings

    settings = DemoSettings.fast_mode() if fast else DemoSettings()
    if duration is not None:
        settings = DemoSettings(**{**settings.__dict__, "duration": duration})
    with friendly_errors():
        result = run_demo(directory, settings, console=console, free_ports=free_ports)
    if not result.ok:
        raise typer.Exit(1)

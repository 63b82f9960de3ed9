"""`edgeloop core`: the core process (trigger worker, executor and registry in one)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from edgeloop.cli.common import WorkspaceOption, friendly_errors, load_workspace

log = logging.getLogger("edgeloop.core")


def core(
    workspace: Path | None = WorkspaceOption,
    site: str = typer.Option(None, "--site", help="Core site to run as. Default: the first core."),
    executor: str = typer.Option(
        None, "--executor", help="Override every pipeline's executor: inline, ray:local, ray://…"
    ),
    interval: float = typer.Option(0.1, "--interval", min=0.01, help="Seconds between passes."),
    once: bool = typer.Option(False, "--once", help="One pass (admit, claim, run), then exit."),
) -> None:
    """Run the core: watch the core journal for trigger events, run pipelines, register models.

    Stops cleanly on SIGTERM or Ctrl-C; a run claimed but not started when the core died is
    started on the next start, exactly once.
    """
    from edgeloop.pipeline.core import CorePipelines

    with friendly_errors():
        ws = load_workspace(workspace)
        pipelines = CorePipelines.open(ws, site, executor)
        worker = pipelines.worker()
        stop = threading.Event()
        if once:
            worker.recover()
            worker.poll()
            worker.start_pending()
            pipelines.close()
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        log.info(
            "core %s: %d trigger rule(s); watching %s",
            pipelines.site,
            len(worker.rules),
            pipelines.journal.url,
        )
        try:
            worker.serve(stop, interval)
        finally:
            pipelines.close()

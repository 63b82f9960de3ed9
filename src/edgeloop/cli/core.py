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
    once: bool = typer.Option(
        False, "--once", help="One pass (drift and quality checks, admit, claim, run), then exit."
    ),
    monitor: bool = typer.Option(
        True,
        "--monitor/--no-monitor",
        help="Run the drift and quality jobs every `monitoring.every` (edgeloop.yaml).",
    ),
) -> None:
    """Run the core: watch the core journal for trigger events, run pipelines, register models,
    and judge drift and live quality of the captured data on the `monitoring:` schedule.

    Stops cleanly on SIGTERM or Ctrl-C; a run claimed but not started when the core died is
    started on the next start, exactly once.
    """
    from edgeloop.monitor.scheduler import monitor_in_thread, monitor_once
    from edgeloop.pipeline.core import CorePipelines

    with friendly_errors():
        ws = load_workspace(workspace)
        pipelines = CorePipelines.open(ws, site, executor)
        worker = pipelines.worker()
        stop = threading.Event()
        if once:
            if monitor:
                monitor_once(ws, pipelines.site)
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
        watcher = None
        try:
            watcher = monitor_in_thread(ws, pipelines.site, stop) if monitor else None
            worker.serve(stop, interval)
        finally:
            stop.set()
            if watcher is not None:
                watcher.join(timeout=30)
            pipelines.close()

"""`edgeloop core`: the core process (trigger worker, executor and registry in one)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeloop.cli.common import WorkspaceOption, err_console, friendly_errors, load_workspace

if TYPE_CHECKING:
    from edgeloop.fleet.embedded import ControlPlaneThread
    from edgeloop.workspace import Workspace

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
    control: bool = typer.Option(
        True,
        "--control/--no-control",
        help="Serve the fleet control plane (API, OpenAPI at /api/v1/openapi.json) in this "
        "process.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address of the control plane."),
    port: int = typer.Option(
        None,
        "--port",
        help="Port of the control plane. Default: the core site's control_port, else 8700.",
    ),
    tick_interval: float = typer.Option(
        None,
        "--tick-interval",
        min=0.01,
        help="Seconds between the control plane's rollout gate evaluations (a wave moves on, "
        "an alias move starts a rollout, at most this late). Default: the core site's "
        "tick_interval, else 1.",
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
        plane = None
        try:
            if control:
                plane = _start_control_plane(ws, pipelines.site, host, port, tick_interval)
            watcher = monitor_in_thread(ws, pipelines.site, stop) if monitor else None
            worker.serve(stop, interval)
        finally:
            stop.set()
            if watcher is not None:
                watcher.join(timeout=30)
            if plane is not None:
                plane.stop()
            pipelines.close()


def _start_control_plane(
    ws: Workspace, site: str, host: str, port: int | None, tick_interval: float | None
) -> ControlPlaneThread:
    from edgeloop.fleet.embedded import control_plane_for_workspace

    plane = control_plane_for_workspace(ws, site, host=host, port=port)
    if tick_interval is not None:
        plane.settings.tick_interval = tick_interval
    built = plane.start()
    token = built.settings.admin_token_path
    state = "minted at this first start" if built.minted_admin else "from an earlier start"
    err_console.print(
        f"control plane on {plane.url} (OpenAPI: {plane.url}/api/v1/openapi.json); "
        f"admin token ({state}, mode 0600): {token}",
        highlight=False,
    )
    return plane

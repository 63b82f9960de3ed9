"""`edgeloop up`, `edgeloop status`, `edgeloop down`: run a whole workspace on this machine."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import typer
from rich.table import Table

from edgeloop.cli.common import (
    WorkspaceOption,
    console,
    err_console,
    friendly_errors,
    load_workspace,
    print_json,
)


def up(
    workspace: Path | None = WorkspaceOption,
    agents: bool = typer.Option(
        True, "--agents/--no-agents", help="Start an edge agent at each edge site."
    ),
    grace: float = typer.Option(
        10.0, "--grace", min=0.0, help="Seconds each component gets to stop before SIGKILL."
    ),
) -> None:
    """Start every component of the workspace and supervise them until Ctrl-C or SIGTERM.

    The core (`edgeloop core`) and, at each edge site, the inference server, the agent and
    the replicator run as separate processes on loopback ports. A process that exits is
    restarted with exponential backoff; logs go to <workspace>/logs/<site>-<component>.log.
    `edgeloop status` shows them, `edgeloop down` stops them from another terminal.
    """
    from edgeloop.supervise.plan import UpOptions
    from edgeloop.supervise.up import build_supervisor

    with friendly_errors():
        ws = load_workspace(workspace)
        supervisor = build_supervisor(ws, UpOptions(agents=agents), grace=grace)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        info = supervisor.state
        console.print(f"[bold]edgeloop up[/] {ws.root}: {len(supervisor.slots)} components")
        for slot in supervisor.slots:
            port = f" port {slot.spec.port}" if slot.spec.port else ""
            console.print(f"  {slot.spec.key}{port}  log {slot.state.log}", highlight=False)
        if info.control_url:
            console.print(f"control plane  {info.control_url}", highlight=False)
            console.print(f"dashboard      {info.dashboard_url}", highlight=False)
            console.print(f"admin token    {info.admin_token_file} (minted at first start)")
        console.print("Ctrl-C stops everything; `edgeloop status` in another terminal.")
        watcher = threading.Thread(target=_report_changes, args=(supervisor, stop), daemon=True)
        watcher.start()
        supervisor.run(stop)
        console.print("all components stopped")


def _report_changes(supervisor: object, stop: threading.Event) -> None:
    """Print a line whenever a component changes status (started, exited, gave up)."""
    from edgeloop.supervise.supervisor import Supervisor

    assert isinstance(supervisor, Supervisor)
    seen: dict[str, tuple[str, int]] = {}
    while not stop.is_set():
        with supervisor.changed:
            supervisor.changed.wait(1.0)
        for comp in supervisor.state.components:
            now = (comp.status, comp.restarts)
            if seen.get(comp.key) != now:
                seen[comp.key] = now
                why = f" ({comp.last_exit})" if comp.status in ("backoff", "failed") else ""
                pid = f" pid {comp.pid}" if comp.pid else ""
                stamp = time.strftime("%H:%M:%S")
                console.print(f"{stamp} {comp.key}: {comp.status}{pid}{why}", highlight=False)


def status(
    workspace: Path | None = WorkspaceOption,
    as_json: bool = typer.Option(False, "--json", help="The state file as JSON."),
) -> None:
    """Show the processes of a running `edgeloop up`: pid, port, up/down, restarts, health.

    Exits 1 when no `edgeloop up` is running for the workspace.
    """
    from dataclasses import asdict

    from edgeloop.supervise.up import pid_alive, read_running

    with friendly_errors():
        ws = load_workspace(workspace)
        running = read_running(ws)
        state = running.state
        if state is None or not running.alive:
            if as_json:
                print_json({"running": False, "workspace": str(ws.root)})
            else:
                extra = ""
                if state is not None:
                    left = [c.key for c in state.components if pid_alive(c.pid)]
                    extra = (
                        f"; it left a stale state file and {len(left)} process(es) running "
                        f"({', '.join(left) or 'none'}): `edgeloop down` stops them"
                    )
                err_console.print(f"no `edgeloop up` is running in {ws.root}{extra}")
            raise typer.Exit(1)
        if as_json:
            print_json({"running": True, **asdict(state)})
            return
        table = Table(title=f"edgeloop up (pid {state.supervisor_pid}) in {ws.root}")
        for col in ("component", "site", "pid", "port", "state", "restarts", "health"):
            table.add_column(col)
        for comp in state.components:
            alive = pid_alive(comp.pid)
            shown = comp.status if alive or comp.status != "up" else "down"
            colour = {"up": "green", "failed": "red", "down": "red"}.get(shown, "yellow")
            table.add_row(
                comp.component,
                comp.site,
                str(comp.pid or "-"),
                str(comp.port or "-"),
                f"[{colour}]{'up' if shown == 'up' else shown}[/]",
                str(comp.restarts),
                comp.health,
            )
        console.print(table)
        if state.control_url:
            console.print(f"control plane {state.control_url}  dashboard {state.dashboard_url}")


def down(
    workspace: Path | None = WorkspaceOption,
    timeout: float = typer.Option(
        60.0, "--timeout", min=1.0, help="Seconds to wait for everything to stop."
    ),
) -> None:
    """Stop the `edgeloop up` running for the workspace (in another terminal) and wait.

    If that `up` was killed and left its processes running, they are stopped directly.
    """
    from edgeloop.supervise.up import bring_down

    with friendly_errors():
        ws = load_workspace(workspace)
        for line in bring_down(ws, timeout):
            console.print(line)

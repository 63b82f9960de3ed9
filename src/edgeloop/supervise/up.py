"""`edgeloop up`, `status` and `down` as library calls: supervise a workspace's processes,
read what a running `up` wrote, and stop it from another process."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from edgeloop.errors import ConfigError, EdgeloopError
from edgeloop.supervise.plan import AGENT, UpOptions, agent_dir, control_url, plan_workspace
from edgeloop.supervise.policy import RestartPolicy
from edgeloop.supervise.state import UpLock, UpState, read_state, state_path
from edgeloop.supervise.supervisor import Supervisor
from edgeloop.workspace import Workspace
from edgeloop.workspace.config import Tier

DASHBOARD_PATH = "/ui/"


def up_state_dir(ws: Workspace) -> Path:
    """Where `up` keeps its state file and lock: `<workspace>/state/`."""
    path = ws.root / "state"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir(ws: Workspace) -> Path:
    return ws.root / "logs"


def admin_token_file(ws: Workspace) -> Path | None:
    """The admin token the core's control plane mints at its first start."""
    from edgeloop.fleet.control import ControlSettings

    if not ws.sites(Tier.CORE):
        return None
    return ControlSettings.for_workspace(ws).admin_token_path


def build_supervisor(
    ws: Workspace,
    options: UpOptions | None = None,
    *,
    policy: RestartPolicy | None = None,
    grace: float = 10.0,
) -> Supervisor:
    """A supervisor for every component of `ws`, with agents joined on their first start."""
    opts = options or UpOptions()
    specs = plan_workspace(ws, opts)
    cores = ws.sites(Tier.CORE)
    url = control_url(ws, cores[0].name, opts.host) if cores else None
    token = admin_token_file(ws)
    prepare = {
        spec.key: _JoinTokenMinter(ws, spec.site, url, token)
        for spec in specs
        if spec.component == AGENT and url is not None and token is not None
    }
    return Supervisor(
        specs,
        workspace=ws.root,
        state_dir=up_state_dir(ws),
        logs_dir=logs_dir(ws),
        policy=policy,
        prepare=prepare,
        grace=grace,
        info={
            "control_url": url,
            "dashboard_url": f"{url}{DASHBOARD_PATH}" if url else None,
            "admin_token_file": str(token) if token else None,
        },
    )


@dataclass
class _JoinTokenMinter:
    """Before an agent's first start: a one-time join token for its site, minted with the
    admin token and written 0600 where the agent reads it (once it has its agent token, the
    join token is not needed again)."""

    ws: Workspace
    site: str
    url: str
    admin: Path

    def __call__(self) -> None:
        from edgeloop.fleet.client import FleetClient

        folder = agent_dir(self.ws, self.site)
        if (folder / "agent.token").exists() or (folder / "join.token").exists():
            return
        labels = dict(self.ws.site(self.site).labels)
        client = FleetClient(self.url, self.admin.read_text().strip(), timeout=10.0)
        try:
            answer = client.join_token(self.site, labels)
        finally:
            client.close()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "join.token"
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(str(answer["join_token"]) + "\n")
        path.with_suffix(".tmp").replace(path)


@dataclass(frozen=True)
class RunningUp:
    """What `edgeloop status` knows: the state file, and whether its `up` is alive."""

    state: UpState | None
    alive: bool


def read_running(ws: Workspace) -> RunningUp:
    """The state of the `up` of `ws` (alive: its lock is held)."""
    folder = ws.root / "state"
    return RunningUp(read_state(state_path(folder)), UpLock(folder).held_by_someone())


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _is_edgeloop(pid)


def _is_edgeloop(pid: int) -> bool:
    """Guards against a recycled pid: the process must be an edgeloop command."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True  # no /proc: trust the pid
    try:
        return b"edgeloop" in cmdline.read_bytes()
    except OSError:
        return False


def bring_down(ws: Workspace, timeout: float = 30.0) -> list[str]:
    """Stop the `up` of `ws` (SIGTERM; it stops its components in order) and wait for it.

    When the `up` died without cleaning up (its lock is free but its state file lists
    processes still running), those processes are stopped directly. Returns what was done.
    """
    running = read_running(ws)
    done: list[str] = []
    if running.state is None and not running.alive:
        raise ConfigError(f"no `edgeloop up` is running in {ws.root}")
    if running.alive and running.state is not None:
        pid = running.state.supervisor_pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not read_running(ws).alive:
                done.append(f"stopped edgeloop up (pid {pid})")
                return done
            time.sleep(0.1)
        raise EdgeloopError(
            f"edgeloop up (pid {pid}) did not stop within {timeout:.0f}s; "
            f"its logs are in {logs_dir(ws)}; `kill -9 {pid}` and run `edgeloop down` again"
        )
    state = running.state
    assert state is not None
    for comp in state.components:
        if comp.pid is not None and pid_alive(comp.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(comp.pid, signal.SIGTERM)
            done.append(f"stopped orphaned {comp.key} (pid {comp.pid})")
    deadline = time.monotonic() + timeout
    for comp in state.components:
        while comp.pid is not None and pid_alive(comp.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if comp.pid is not None and pid_alive(comp.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(comp.pid, signal.SIGKILL)
    state_path(ws.root / "state").unlink(missing_ok=True)
    done.append("removed the stale state file")
    return done

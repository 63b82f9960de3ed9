"""The supervisor with real child processes: SIGKILLed children come back, failing ones back
off and are given up on, dependencies wait for health, shutdown leaves nothing running."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeloop.errors import ConfigError
from edgeloop.supervise.policy import RestartPolicy
from edgeloop.supervise.spec import ComponentSpec
from edgeloop.supervise.state import read_state
from edgeloop.supervise.supervisor import Supervisor

SLEEPER = (sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


class Running:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.stop = threading.Event()
        self.thread = threading.Thread(target=supervisor.run, args=(self.stop,), daemon=True)

    def comp(self, key: str):  # type: ignore[no-untyped-def]
        return next(c for c in self.supervisor.state.components if c.key == key)


@pytest.fixture
def run_supervisor(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(specs: list[ComponentSpec], **kw: object) -> Running:
        sup = Supervisor(
            specs,
            workspace=tmp_path,
            state_dir=tmp_path / "state",
            logs_dir=tmp_path / "logs",
            grace=5.0,
            **kw,  # type: ignore[arg-type]
        )
        running = Running(sup)
        running.thread.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop.set()
        running.thread.join(30)


def test_a_sigkilled_component_is_restarted_and_shutdown_stops_all(
    run_supervisor: Callable[..., Running], tmp_path: Path
) -> None:
    port = free_port()
    web = ComponentSpec(
        "web",
        "edge-a",
        (sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
        port=port,
        health_url=f"http://127.0.0.1:{port}/",
    )
    worker = ComponentSpec("worker", "edge-a", SLEEPER, requires=("edge-a-web",))
    running = run_supervisor([web, worker], policy=RestartPolicy(initial=0.1), probe_interval=0.2)
    wait_for(lambda: running.comp("edge-a-worker").status == "up", "the worker to start")
    assert running.comp("edge-a-web").health == "ok"  # the worker waited for it
    state = read_state(tmp_path / "state" / "up.json")
    assert state is not None
    assert {c.key for c in state.components} == {"edge-a-web", "edge-a-worker"}
    first = running.comp("edge-a-worker").pid
    assert first is not None and alive(first)

    os.kill(first, signal.SIGKILL)
    wait_for(
        lambda: (
            running.comp("edge-a-worker").pid not in (None, first)
            and running.comp("edge-a-worker").status == "up"
        ),
        "the worker to be restarted",
    )
    comp = running.comp("edge-a-worker")
    assert comp.restarts == 1 and "-9" in (comp.last_exit or "")
    log = (tmp_path / "logs" / "edge-a-worker.log").read_text()
    assert log.count("start #") == 2

    pids = [c.pid for c in running.supervisor.state.components]
    running.stop.set()
    running.thread.join(30)
    assert not running.thread.is_alive()
    assert all(pid is not None and not alive(pid) for pid in pids)
    assert not (tmp_path / "state" / "up.json").exists()
    assert all(c.status == "stopped" for c in running.supervisor.state.components)


def test_a_component_that_keeps_failing_backs_off_then_is_given_up(
    run_supervisor: Callable[..., Running],
) -> None:
    crash = ComponentSpec("crash", "core", (sys.executable, "-c", "raise SystemExit(3)"))
    steady = ComponentSpec("steady", "core", SLEEPER)
    running = run_supervisor(
        [crash, steady], policy=RestartPolicy(initial=0.05, factor=2.0, give_up_after=3)
    )
    wait_for(lambda: running.comp("core-crash").status == "failed", "the supervisor to give up")
    comp = running.comp("core-crash")
    assert comp.restarts == 3 and "giving up" in (comp.last_exit or "")
    assert comp.pid is None
    assert running.comp("core-steady").status == "up"  # the others keep running


def test_a_start_hook_runs_before_each_start_and_its_failure_backs_off(
    run_supervisor: Callable[..., Running],
) -> None:
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("control plane not ready")

    spec = ComponentSpec("agent", "edge-b", SLEEPER)
    running = run_supervisor(
        [spec], policy=RestartPolicy(initial=0.05), prepare={"edge-b-agent": hook}
    )
    wait_for(lambda: running.comp("edge-b-agent").status == "up", "the agent to start")
    assert len(calls) == 3
    assert running.comp("edge-b-agent").restarts == 2


def test_one_supervisor_per_state_dir(
    run_supervisor: Callable[..., Running], tmp_path: Path
) -> None:
    running = run_supervisor([ComponentSpec("a", "core", SLEEPER)])
    wait_for(lambda: running.comp("core-a").status == "up", "the first supervisor")
    second = Supervisor(
        [ComponentSpec("a", "core", SLEEPER)],
        workspace=tmp_path,
        state_dir=tmp_path / "state",
        logs_dir=tmp_path / "logs2",
    )
    with pytest.raises(ConfigError, match="already running"):
        second.run(threading.Event())
    assert running.comp("core-a").status == "up"


def test_duplicate_component_keys_are_refused(tmp_path: Path) -> None:
    spec = ComponentSpec("a", "core", SLEEPER)
    with pytest.raises(ValueError, match="unique"):
        Supervisor([spec, spec], workspace=tmp_path, state_dir=tmp_path, logs_dir=tmp_path)

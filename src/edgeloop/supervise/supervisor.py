"""The supervisor of `edgeloop up`: starts each component once those it requires are healthy,
restarts any that exits (backoff from `policy`), probes health, keeps the state file current
and stops everything in reverse order when told to."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from edgeloop.supervise.policy import RestartPolicy, RunHistory, after_exit
from edgeloop.supervise.process import ChildProcess
from edgeloop.supervise.spec import ComponentSpec
from edgeloop.supervise.state import ComponentState, UpLock, UpState, state_path, write_state

log = logging.getLogger("edgeloop.up")

Probe = Callable[[str], str]
"""Given a health URL, answers `ok`, `unhealthy` or `unreachable`."""


def http_probe(url: str, timeout: float = 0.5) -> str:
    """GET `url`: `ok` on 2xx, `unhealthy` on another answer, `unreachable` on no answer."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return "unreachable"
    return "ok" if response.is_success else "unhealthy"


@dataclass
class _Slot:
    spec: ComponentSpec
    child: ChildProcess
    state: ComponentState
    history: RunHistory = field(default_factory=RunHistory)
    start_at: float | None = 0.0
    """Monotonic time of the next start; None: not to be started (failed or stopping)."""
    last_probe: float = 0.0


class Supervisor:
    """Runs `specs` until `stop` is set; one per workspace (an exclusive lock makes sure)."""

    def __init__(
        self,
        specs: Sequence[ComponentSpec],
        *,
        workspace: Path,
        state_dir: Path,
        logs_dir: Path,
        policy: RestartPolicy | None = None,
        prepare: Mapping[str, Callable[[], None]] | None = None,
        probe: Probe = http_probe,
        probe_interval: float = 1.0,
        grace: float = 10.0,
        info: Mapping[str, str | None] | None = None,
    ) -> None:
        keys = [s.key for s in specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"component keys must be unique: {keys}")
        self.policy = policy or RestartPolicy()
        self.prepare = dict(prepare or {})
        self.probe = probe
        self.probe_interval = probe_interval
        self.grace = grace
        self.state_dir = state_dir
        self.lock = UpLock(state_dir)
        self.slots = [
            _Slot(
                spec,
                ChildProcess(spec, logs_dir / f"{spec.key}.log"),
                ComponentState(
                    key=spec.key,
                    component=spec.component,
                    site=spec.site,
                    port=spec.port,
                    log=str(logs_dir / f"{spec.key}.log"),
                ),
            )
            for spec in specs
        ]
        self.state = UpState(
            workspace=str(workspace),
            supervisor_pid=os.getpid(),
            started=time.time(),
            components=[slot.state for slot in self.slots],
        )
        for name, value in (info or {}).items():  # control_url, dashboard_url, admin_token_file
            setattr(self.state, name, value)
        self._dirty = True
        self._last_write = 0.0
        self.changed = threading.Condition()
        """Notified after every pass that changed something (for in-process watchers)."""

    @property
    def path(self) -> Path:
        return state_path(self.state_dir)

    def slot(self, key: str) -> _Slot:
        return next(s for s in self.slots if s.spec.key == key)

    def run(self, stop: threading.Event, tick: float = 0.1) -> None:
        """Supervise until `stop` is set, then stop every component (reverse order)."""
        self.lock.acquire()
        try:
            while not stop.is_set():
                self.step(time.monotonic())
                stop.wait(tick)
        finally:
            try:
                self.shutdown()
            finally:
                self.path.unlink(missing_ok=True)
                self.lock.release()

    def step(self, now: float) -> None:
        """One pass: notice exits, start what is due, probe health, write the state file."""
        for slot in self.slots:
            self._notice_exit(slot, now)
        for slot in self.slots:
            if not slot.child.running() and slot.start_at is not None and now >= slot.start_at:
                self._maybe_start(slot, now)
        for slot in self.slots:
            self._probe(slot, now)
        if self._dirty or now - self._last_write >= 2.0:
            self._write(now)

    def healthy(self, key: str) -> bool:
        """Running and, when it has a health URL, answering ok."""
        slot = self.slot(key)
        if not slot.child.running():
            return False
        return slot.spec.health_url is None or slot.state.health == "ok"

    def _notice_exit(self, slot: _Slot, now: float) -> None:
        code = slot.child.poll()
        if code is None or slot.state.status in ("backoff", "failed", "stopped"):
            return
        slot.child.reap_group()
        decision = after_exit(
            self.policy,
            slot.history,
            ran_for=now - slot.child.started_at,
            exit_code=code,
            stopping=False,
        )
        slot.history = decision.history
        slot.state.restarts = decision.history.restarts
        slot.state.last_exit = decision.reason
        slot.state.pid = None
        slot.state.health = "-" if slot.spec.health_url is None else "unreachable"
        slot.state.since = time.time()
        if decision.restart:
            slot.state.status = "backoff"
            slot.start_at = now + decision.delay
        else:
            slot.state.status = "failed"
            slot.start_at = None
        log.warning("%s %s", slot.spec.key, decision.reason)
        self._dirty = True

    def _maybe_start(self, slot: _Slot, now: float) -> None:
        if not all(self.healthy(key) for key in slot.spec.requires):
            if slot.state.status != "waiting":
                slot.state.status = "waiting"
                self._dirty = True
            return
        hook = self.prepare.get(slot.spec.key)
        try:
            if hook is not None:
                hook()
            pid = slot.child.start(slot.state.restarts)
        except Exception as exc:  # a start that fails is an exit like any other
            log.warning("%s could not start: %s", slot.spec.key, exc)
            decision = after_exit(
                self.policy, slot.history, ran_for=0.0, exit_code=-1, stopping=False
            )
            slot.history = decision.history
            slot.state.restarts = decision.history.restarts
            slot.state.last_exit = f"could not start: {exc}"
            slot.state.status = "backoff" if decision.restart else "failed"
            slot.start_at = now + decision.delay if decision.restart else None
            self._dirty = True
            return
        slot.state.pid = pid
        slot.state.status = "up"
        slot.state.since = time.time()
        slot.last_probe = 0.0
        self._dirty = True
        log.debug("%s started (pid %d)", slot.spec.key, pid)

    def _probe(self, slot: _Slot, now: float) -> None:
        if slot.spec.health_url is None or not slot.child.running():
            return
        if now - slot.last_probe < self.probe_interval:
            return
        slot.last_probe = now
        health = self.probe(slot.spec.health_url)
        if health != slot.state.health:
            slot.state.health = health
            self._dirty = True

    def _write(self, now: float) -> None:
        write_state(self.path, self.state)
        self._dirty = False
        self._last_write = now
        with self.changed:
            self.changed.notify_all()

    def shutdown(self) -> None:
        """SIGTERM every running component, last started first; SIGKILL any still there after
        the grace period."""
        self.state.stopping = True
        for slot in self.slots:
            slot.start_at = None
        self._write(time.monotonic())
        running = [s for s in reversed(self.slots) if s.child.running()]
        for slot in running:
            log.info("stopping %s (pid %s)", slot.spec.key, slot.child.pid)
            slot.child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for slot in running:
            if not slot.child.wait(max(0.0, deadline - time.monotonic())):
                log.warning("%s did not stop within %.0fs: SIGKILL", slot.spec.key, self.grace)
                slot.child.signal(signal.SIGKILL)
                slot.child.wait(5.0)
            slot.child.reap_group()
            slot.state.status = "stopped"
            slot.state.pid = None
        for slot in self.slots:
            if slot.state.status != "failed":
                slot.state.status = "stopped"
        self._write(time.monotonic())

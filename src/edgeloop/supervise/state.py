"""The state file of a running `edgeloop up`: which processes run where, so that `edgeloop
status` and `edgeloop down` in another terminal can find them. JSON, replaced atomically."""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from edgeloop.errors import ConfigError

STATE_NAME = "up.json"
LOCK_NAME = "up.lock"


@dataclass
class ComponentState:
    """One supervised component as last seen by the supervisor."""

    key: str
    component: str
    site: str
    status: str = "starting"
    """starting, up, backoff (waiting to restart), failed (given up), stopped."""
    pid: int | None = None
    port: int | None = None
    restarts: int = 0
    health: str = "-"
    """ok, unhealthy, unreachable, or - when the component has no health URL."""
    log: str = ""
    since: float = 0.0
    last_exit: str | None = None


@dataclass
class UpState:
    """Everything `edgeloop status` shows; written by the supervisor whenever it changes."""

    workspace: str
    supervisor_pid: int
    started: float
    components: list[ComponentState] = field(default_factory=list)
    control_url: str | None = None
    dashboard_url: str | None = None
    admin_token_file: str | None = None
    stopping: bool = False

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> UpState:
        data: dict[str, Any] = orjson.loads(raw)
        components = [ComponentState(**c) for c in data.pop("components", [])]
        return cls(components=components, **data)


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_NAME


def write_state(path: Path, state: UpState) -> None:
    """Replace the state file atomically (write a temp file, fsync, rename)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(state.to_json())
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def read_state(path: Path) -> UpState | None:
    """The state of the `up` that wrote `path`, or None when there is none or it is unreadable."""
    try:
        return UpState.from_json(path.read_bytes())
    except (FileNotFoundError, ValueError, TypeError):
        return None


class UpLock:
    """An exclusive lock held by the one `edgeloop up` of a workspace for its whole life; the
    kernel releases it when that process dies, however it dies."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConfigError(
                f"`edgeloop up` is already running for this workspace (lock {self.path}); "
                "see `edgeloop status`, stop it with `edgeloop down`"
            ) from None
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def held_by_someone(self) -> bool:
        """True while some process holds the lock (an `up` is running)."""
        if not self.path.exists():
            return False
        with open(self.path, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False

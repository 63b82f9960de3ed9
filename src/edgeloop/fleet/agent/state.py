"""What an edge agent keeps on disk between runs: the last verified desired state, what it
installed, swaps still on probation, versions that failed, and reports not yet delivered.

One JSON file, replaced atomically (write, fsync, rename), so a crash or a power cut leaves
the old state or the new one, never a torn one.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

STATE_NAME = "agent-state.json"
MAX_OUTBOX = 1000
MAX_HISTORY = 200


@dataclass
class Probation:
    """A swap being watched: if the server turns unready or errors, go back to `previous`."""

    model: str
    version: str
    previous: str | None
    since: float
    generation: int
    baseline_requests: float = 0.0
    baseline_errors: float = 0.0


@dataclass
class AgentState:
    """The agent's durable memory; `envelope` is the raw signed desired state last accepted."""

    envelope: str | None = None
    generation: int = 0
    etag: str | None = None
    installed: dict[str, str] = field(default_factory=dict)
    previous: dict[str, str] = field(default_factory=dict)
    probation: dict[str, Probation] = field(default_factory=dict)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """model -> {version, generation, reason}: not retried until the desired state changes."""
    refused: dict[str, int] = field(default_factory=dict)
    """"model@version" -> generation already reported as refused (report once)."""
    outbox: list[dict[str, Any]] = field(default_factory=list)
    """Reports waiting for the control plane (kept while it is unreachable)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every swap this agent made (load, rollback, unload), newest last, bounded."""
    alerts: dict[str, bool] = field(default_factory=dict)

    def record(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        del self.history[:-MAX_HISTORY]

    def queue_report(self, report: dict[str, Any]) -> None:
        self.outbox.append(report)
        del self.outbox[:-MAX_OUTBOX]  # a very long outage keeps the newest reports


class StateFile:
    """Loads and saves an AgentState at `path` (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> AgentState:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return AgentState()
        probation = {k: Probation(**v) for k, v in (raw.pop("probation", None) or {}).items()}
        known = AgentState.__dataclass_fields__
        return AgentState(probation=probation, **{k: v for k, v in raw.items() if k in known})

    def save(self, state: AgentState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps(asdict(state), option=orjson.OPT_INDENT_2)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)
        _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

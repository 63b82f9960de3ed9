"""How a replicator reports: a rich progress bar for people, plain lines or JSON for logs."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

import orjson


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where a replicator stands: this run's work and the durable backlog."""

    copied: int
    skipped: int
    bytes: int
    retries: int
    failed: int
    backlog: int
    target_available: bool
    elapsed: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProgressReporter(Protocol):
    """Receives what a replicator does; implementations must be cheap, they run inline."""

    def copied(self, key: str, size: int, skipped: bool) -> None: ...

    def retrying(self, key: str | None, error: str, delay: float) -> None: ...

    def status(self, snapshot: Snapshot) -> None: ...

    def finish(self, snapshot: Snapshot) -> None: ...


class SilentReporter:
    """Reports nothing (library default)."""

    def copied(self, key: str, size: int, skipped: bool) -> None:
        return None

    def retrying(self, key: str | None, error: str, delay: float) -> None:
        return None

    def status(self, snapshot: Snapshot) -> None:
        return None

    def finish(self, snapshot: Snapshot) -> None:
        return None


class LineReporter:
    """Plain text lines: one per retry and a status line at most every `every` seconds."""

    def __init__(self, stream: TextIO | None = None, every: float = 5.0, label: str = "") -> None:
        self.stream = stream or sys.stderr
        self.label = f"{label}: " if label else ""
        self.every = every
        self._last = 0.0

    def _line(self, text: str) -> None:
        self.stream.write(self.label + text + "\n")
        self.stream.flush()

    def copied(self, key: str, size: int, skipped: bool) -> None:
        return None

    def retrying(self, key: str | None, error: str, delay: float) -> None:
        what = key or "target"
        self._line(f"retry {what} in {delay:.1f}s: {error}")

    def status(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._line(_describe(snapshot))

    def finish(self, snapshot: Snapshot) -> None:
        self._line(_describe(snapshot))


def _describe(s: Snapshot) -> str:
    state = "" if s.target_available else " target UNAVAILABLE"
    return (
        f"copied {s.copied} skipped {s.skipped} ({s.bytes / 1e6:.1f} MB) failed {s.failed} "
        f"retries {s.retries} backlog {s.backlog} in {s.elapsed:.1f}s{state}"
    )


class JsonReporter:
    """JSON lines on stdout: `copied` per object, `retry`, periodic `status`, final `summary`."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every: float = 5.0,
        per_object: bool = True,
        label: str = "",
    ) -> None:
        self.stream = stream or sys.stdout
        self.label = label
        self.every = every
        self.per_object = per_object
        self._last = 0.0

    def _emit(self, record: dict[str, Any]) -> None:
        if self.label:
            record["rule"] = self.label
        self.stream.write(orjson.dumps(record).decode() + "\n")

    def copied(self, key: str, size: int, skipped: bool) -> None:
        if self.per_object:
            self._emit({"event": "copied", "key": key, "size": size, "skipped": skipped})

    def retrying(self, key: str | None, error: str, delay: float) -> None:
        self._emit({"event": "retry", "key": key, "error": error, "delay": round(delay, 3)})
        self.stream.flush()

    def status(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._emit({"event": "status", **snapshot.to_dict()})
            self.stream.flush()

    def finish(self, snapshot: Snapshot) -> None:
        self._emit({"event": "summary", **snapshot.to_dict()})
        self.stream.flush()


class RichReporter:
    """A live progress bar on the terminal (stderr): objects copied against the backlog."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]replicate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task("replicate", total=None, note="")
        self._started = False
        self._done = 0

    def _start(self) -> None:
        # On first use, not when built: the bar's refresh thread must not exist yet when a
        # replicator forks its copy processes (workers.py forks only a single-thread process).
        if not self._started:
            self._started = True
            self._progress.start()

    def copied(self, key: str, size: int, skipped: bool) -> None:
        self._start()
        self._done += 1
        self._progress.update(self._task, completed=self._done)

    def retrying(self, key: str | None, error: str, delay: float) -> None:
        self._start()
        self._progress.console.print(f"[yellow]retry[/] {key or 'target'} in {delay:.1f}s: {error}")

    def status(self, snapshot: Snapshot) -> None:
        self._start()
        note = f"backlog {snapshot.backlog}"
        if not snapshot.target_available:
            note += " [red]target unavailable[/]"
        self._progress.update(
            self._task, total=self._done + snapshot.backlog, note=note, completed=self._done
        )

    def finish(self, snapshot: Snapshot) -> None:
        self.status(snapshot)
        self._progress.stop()
        self._progress.console.print(_describe(snapshot), highlight=False)

"""A batch of copies into a directory store is made durable (its directories fsynced) before
its events are emitted and before the ledger marks it done."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from replication_doubles import Source

import edgeloop.store.local as local_module
from edgeloop.model.events import Event
from edgeloop.replication import Ledger, ReplicationOptions, Replicator
from edgeloop.store import LocalStore


class CheckingSink:
    """Records, for each event, whether its object's directory had been synced by then."""

    def __init__(self, synced: set[Path], root: Path) -> None:
        self.synced = synced
        self.root = root
        self.unsynced_at_emit: list[str] = []
        self.events: dict[str, Event] = {}

    def emit(self, event: Event) -> bool:
        return self.emit_many([event]) == 1

    def emit_many(self, events: Sequence[Event]) -> int:
        new = 0
        for event in events:
            if (self.root / event.subject).parent not in self.synced:
                self.unsynced_at_emit.append(event.subject)
            new += event.id not in self.events
            self.events[event.id] = event
        return new


def test_directories_are_synced_before_events_and_ledger(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: set[Path] = set()
    calls: list[Path] = []
    lock = threading.Lock()
    real = local_module._fsync_dir

    def record(path: Path) -> None:
        real(path)
        with lock:
            synced.add(Path(path))
            calls.append(Path(path))

    monkeypatch.setattr(local_module, "_fsync_dir", record)
    written = source.write(120, prefix="captures/m/a/")
    written |= source.write(80, start=120, prefix="captures/m/b/")
    target = LocalStore(tmp_path / "target")
    sink = CheckingSink(synced, target.root)
    ledger = Ledger(tmp_path / "ledger.db")
    rep = Replicator(
        source.store, target, ledger, sink, source_journal=source.journal,
        target_site="core", options=ReplicationOptions(transfers=4, batch_size=32),
    )  # fmt: skip
    with rep:
        snap = rep.run_once()
    assert snap.copied == 200
    assert len(sink.events) == 200
    assert sink.unsynced_at_emit == []
    assert {k: target.get(k).read() for k in written} == written
    # Batched: far fewer directory syncs than objects.
    assert len(calls) < 200 // 4
    assert ledger.counts().done == 200

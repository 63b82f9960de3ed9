"""A batch of copies into a directory store is made durable (its directories fsynced) before
its events are emitted and before the ledger marks it done; planning overlaps the copies."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from replication_doubles import Source, WrappedStore

import edgeloop.store.local as local_module
from edgeloop.model.events import Event
from edgeloop.replication import Ledger, MemorySink, ReplicationOptions, Replicator
from edgeloop.store import LocalStore, ObjectStore
from edgeloop.store.base import ObjectInfo, PutData
from edgeloop.testing.serving import wait_for


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


@pytest.mark.parametrize("processes", [0, 2], ids=["threads", "processes"])
def test_directories_are_synced_before_events_and_ledger(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: int
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
        target_site="core",
        # Copy processes leave the syncs to the replicator too: it makes them here.
        options=ReplicationOptions(transfers=4, batch_size=32, processes=processes),
    )  # fmt: skip
    with rep:
        snap = rep.run_once()
        assert (rep._processes is not None) == bool(processes)
    assert snap.copied == 200
    assert len(sink.events) == 200
    assert sink.unsynced_at_emit == []
    assert {k: target.get(k).read() for k in written} == written
    # Batched: far fewer directory syncs than objects.
    assert len(calls) < 200 // 4
    assert ledger.counts().done == 200


class CountingSource(WrappedStore):
    """Counts listing calls; the second one opens `listed_again`."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.listed_again = threading.Event()

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        self._count("list")
        if self.calls["list"] >= 2:
            self.listed_again.set()
        return self.inner.list(prefix, start_after=start_after)


class GatedTarget(WrappedStore):
    """Holds every put after the first `free` until the source has been listed a second time
    (waiting at most 10 s, once: a put that waits it out opens the gate for good)."""

    def __init__(self, inner: ObjectStore, source: CountingSource, free: int) -> None:
        super().__init__(inner)
        self.source = source
        self.free = free
        self.waited_out = 0

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        self._count("put")
        if self.calls["put"] > self.free and not self.source.listed_again.wait(10):
            with self._lock:
                self.waited_out += 1
            self.source.listed_again.set()
        return self.inner.put(key, data, expected_sha256=expected_sha256)


def _gated(source: Source, tmp_path: Path) -> tuple[Replicator, GatedTarget]:
    """A replicator (pages of 50) whose target holds every copy after the 40th until the
    source is listed again: only planning ahead while copying gets through without waiting."""
    counting = CountingSource(source.store)
    target = GatedTarget(LocalStore(tmp_path / "target", fsync=False), counting, free=40)
    rep = Replicator(
        counting, target, Ledger(tmp_path / "ledger.db"), MemorySink(),
        options=ReplicationOptions(transfers=2, list_page=50, poll_interval=0.05),
    )  # fmt: skip
    return rep, target


def test_next_listing_page_is_read_while_copies_are_in_flight(
    source: Source, tmp_path: Path
) -> None:
    written = source.write(120)
    rep, target = _gated(source, tmp_path)
    with rep:
        snap = rep.run_once()
    assert target.waited_out == 0
    assert snap.copied == 120
    assert {k: target.inner.get(k).read() for k in written} == written


def test_follow_also_reads_the_next_page_while_copies_are_in_flight(
    source: Source, tmp_path: Path
) -> None:
    written = source.write(120)
    rep, target = _gated(source, tmp_path)
    stop = threading.Event()
    with rep:
        follower = threading.Thread(target=rep.follow, args=(stop,))
        follower.start()
        try:
            wait_for(lambda: rep.copied >= 120, timeout=60)
        finally:
            stop.set()
            follower.join()
    assert target.waited_out == 0
    assert {k: target.inner.get(k).read() for k in written} == written

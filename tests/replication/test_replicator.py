"""The replicator over real directory stores and journals, with target doubles for faults."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from replication_doubles import (
    CorruptingStore,
    FlakyStore,
    Source,
    WrappedStore,
    target_objects,
)

from edgeloop.errors import ReplicationError
from edgeloop.journal import SQLiteJournal
from edgeloop.journal.base import JournalEntry
from edgeloop.model.events import Event, EventType
from edgeloop.replication import Backoff, Ledger, MemorySink, ReplicationOptions, Replicator
from edgeloop.store import LocalStore, MemoryStore, ObjectStore

FAST = Backoff(base=0.01, factor=2.0, cap=0.05)


def make(
    source: Source,
    target: ObjectStore,
    tmp_path: Path,
    *,
    sink: object | None = None,
    journal: object | None = "source",
    **options: object,
) -> Replicator:
    opts = ReplicationOptions(backoff=FAST, **options)  # type: ignore[arg-type]
    return Replicator(
        source.store,
        target,
        Ledger(tmp_path / "ledger.db"),
        sink if sink is not None else MemorySink(),  # type: ignore[arg-type]
        source_journal=source.journal if journal == "source" else journal,  # type: ignore[arg-type]
        source_site="edge-a",
        target_site="core",
        options=opts,
    )


def replicated(sink: MemorySink) -> dict[str, str]:
    return {e.subject: e.data["sha256"] for e in sink.events.values()}


def test_journal_driven_copy_is_byte_identical_with_one_event_each(
    source: Source, tmp_path: Path
) -> None:
    written = source.write(300)
    target = LocalStore(tmp_path / "target")
    sink = MemorySink()
    with make(source, target, tmp_path, sink=sink, transfers=4) as rep:
        snap = rep.run_once()
    assert snap.copied == 300 and snap.failed == 0 and snap.backlog == 0
    assert target_objects(target) == written
    assert len(sink.events) == 300
    assert set(replicated(sink)) == set(written)
    event = next(iter(sink.events.values()))
    assert event.type == EventType.OBJECT_REPLICATED and event.site == "core"


def test_events_go_to_the_target_journal(source: Source, tmp_path: Path) -> None:
    source.write(20)
    core_journal = SQLiteJournal(tmp_path / "core.db")
    with make(source, MemoryStore(), tmp_path, sink=core_journal) as rep:
        rep.run_once()
    entries = core_journal.read(0, types=[EventType.OBJECT_REPLICATED])
    assert len(entries) == 20


def test_incremental_pass_never_lists_the_source(source: Source, tmp_path: Path) -> None:
    source.write(5000, size=16)
    counted = WrappedStore(source.store)
    target = MemoryStore()
    sink = MemorySink()
    rep = Replicator(
        counted,
        target,
        Ledger(tmp_path / "ledger.db"),
        sink,
        source_journal=source.journal,
        target_site="core",
        options=ReplicationOptions(transfers=4),
    )
    rep.run_once()
    assert len(sink.events) == 5000
    new = source.write(10, start=5000, size=16)
    counted.calls.clear()
    snap = rep.run_once()
    rep.close()
    assert snap.copied == 10
    assert counted.calls.get("list", 0) == 0
    assert counted.calls["get"] == 10  # only the new objects were read
    assert len(sink.events) == 5010
    assert all(target_objects(target)[k] == v for k, v in new.items())


def test_same_journal_event_many_times_gives_one_copy_one_event(
    source: Source, tmp_path: Path
) -> None:
    written = source.write(30)
    entries = source.journal.read(0, limit=1000)

    class RepeatingJournal:
        """Delivers every entry 1-5 times, shuffled, as an at-least-once feed may."""

        url = "test://repeating"

        def __init__(self) -> None:
            rng = random.Random(3)
            feed = [e for e in entries for _ in range(rng.randint(1, 5))]
            rng.shuffle(feed)
            self.feed = [JournalEntry(i + 1, e.event) for i, e in enumerate(feed)]

        def read(self, after: int = 0, *, limit: int = 1000, types=None) -> list[JournalEntry]:
            return [e for e in self.feed if e.seq > after][:limit]

    target = CountingTarget = WrappedStore(MemoryStore())
    sink = MemorySink()
    with make(source, CountingTarget, tmp_path, sink=sink, journal=RepeatingJournal()) as rep:
        rep.run_once()
        # And a ledger cursor rewound to zero replays everything again: still nothing new.
        rep.ledger.set_meta("journal_cursor", "0")
        rep.run_once()
    assert target.calls["put"] == 30
    assert len(sink.events) == 30
    assert target_objects(target.inner) == written


def test_corruption_in_transit_is_detected_retried_and_never_marked_done(
    source: Source, tmp_path: Path
) -> None:
    written = source.write(10)
    inner = LocalStore(tmp_path / "target")
    target = CorruptingStore(inner, times=15)
    sink = MemorySink()
    with make(source, target, tmp_path, sink=sink, give_up_after=10) as rep:
        snap = rep.run_once()
    assert target.corrupted == 15
    assert snap.retries >= 15 and snap.failed == 0
    assert target_objects(inner) == written  # the corrupt copies were never made visible
    assert len(sink.events) == 10


def test_persistent_corruption_ends_failed_visible_and_unevented(
    source: Source, tmp_path: Path
) -> None:
    source.write(3)
    inner = LocalStore(tmp_path / "target")
    sink = MemorySink()
    with make(
        source, CorruptingStore(inner, times=None), tmp_path, sink=sink, give_up_after=3
    ) as rep:
        snap = rep.run_once()
        status = rep.status()
    assert snap.failed == 3
    assert status.counts.failed == 3 and status.counts.done == 0
    assert all(attempts == 3 and "ChecksumMismatch" in err for _, attempts, err in status.failures)
    assert list(inner.list()) == []
    assert sink.events == {}


def test_target_down_then_back_drains_backlog_once(source: Source, tmp_path: Path) -> None:
    target = FlakyStore(LocalStore(tmp_path / "target"))
    sink = MemorySink()
    rep = make(source, target, tmp_path, sink=sink, poll_interval=0.05)
    stop = threading.Event()
    runner = threading.Thread(target=rep.follow, args=(stop,))
    target.down.set()
    runner.start()
    try:
        written = source.write(40)
        deadline = time.monotonic() + 20
        while (target.refused < 5 or rep.backlog < 40) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rep.backlog == 40  # waiting on disk, visible
        assert not rep.target_available
        assert sink.events == {}
        target.down.clear()
        while rep.backlog and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(10)
        rep.close()
    assert rep.backlog == 0 and rep.target_available
    assert target_objects(target.inner) == written
    assert len(sink.events) == 40 and sink.deliveries == 40


def test_backlog_is_bounded_and_nothing_is_dropped(source: Source, tmp_path: Path) -> None:
    written = source.write(50)
    target = FlakyStore(LocalStore(tmp_path / "target"))
    target.down.set()
    sink = MemorySink()
    rep = make(source, target, tmp_path, sink=sink, max_backlog=10, outage_timeout=0.3)
    with pytest.raises(Exception, match="unreachable"):
        rep.run_once()
    assert rep.backlog == 10
    assert rep.ledger.journal_cursor < source.journal.last_seq()  # the rest waits in the journal
    target.down.clear()
    rep.run_once()
    rep.close()
    assert target_objects(target.inner) == written
    assert len(sink.events) == 50


def test_anti_entropy_finds_objects_written_without_events(tmp_path: Path) -> None:
    src = LocalStore(tmp_path / "src", fsync=False)
    for day in ("01", "02", "03"):
        for i in range(7):
            src.put(f"captures/m/2026/01/{day}/{i}.bin", f"{day}-{i}".encode())
    src.put("other/x", b"not under the prefix")
    target = WrappedStore(LocalStore(tmp_path / "dst"))
    # One object is already at the target (copied by someone else): verified, not re-sent.
    target.inner.put("captures/m/2026/01/01/0.bin", b"01-0")
    sink = MemorySink()
    rep = Replicator(
        src,
        target,
        Ledger(tmp_path / "ledger.db"),
        sink,
        target_site="core",
        options=ReplicationOptions(prefix="captures/", list_page=5, backoff=FAST),
    )
    snap = rep.run_once()
    assert (snap.copied, snap.skipped) == (20, 1)
    assert target.calls["put"] == 20
    assert len(sink.events) == 21
    assert rep.ledger.watermark is None and rep.ledger.last_full_pass is not None
    # The next pass finds nothing new and copies nothing.
    src.put("captures/m/2026/01/04/0.bin", b"late")
    snap = rep.run_once()
    rep.close()
    assert snap.copied == 1 and target.calls["put"] == 21


def test_object_deleted_at_the_source_is_gone_not_failed(source: Source, tmp_path: Path) -> None:
    written = source.write(5)
    first = sorted(written)[0]
    source.store.delete(first)
    sink = MemorySink()
    with make(source, MemoryStore(), tmp_path, sink=sink) as rep:
        snap = rep.run_once()
        counts = rep.status().counts
    assert snap.failed == 0 and counts.gone == 1 and counts.done == 4
    assert first not in replicated(sink)


def test_event_with_a_traversal_key_copies_nothing_and_fails(
    source: Source, tmp_path: Path
) -> None:
    evil = "captures/../../outside.bin"
    source.journal.append(
        Event(
            id="created:edge-a:evil",
            type=EventType.OBJECT_CREATED,
            site="edge-a",
            subject=evil,
            data={"key": evil, "size": 1, "sha256": "0" * 64},
        )
    )
    target = LocalStore(tmp_path / "target")
    with make(source, target, tmp_path, give_up_after=2) as rep:
        snap = rep.run_once()
        failures = rep.status().failures
    assert snap.failed == 1 and snap.copied == 0
    assert "refused object key" in failures[0][2]
    assert not (tmp_path / "outside.bin").exists()
    assert list(target.list()) == []


def test_listing_pass_with_the_target_down_gives_up_after_the_outage_timeout(
    tmp_path: Path,
) -> None:
    src = LocalStore(tmp_path / "src", fsync=False)
    src.put("captures/a.bin", b"a")
    target = FlakyStore(LocalStore(tmp_path / "dst"))
    target.down.set()
    rep = Replicator(
        src,
        target,
        Ledger(tmp_path / "ledger.db"),
        MemorySink(),
        options=ReplicationOptions(backoff=FAST, outage_timeout=0.3),
    )
    with pytest.raises(ReplicationError, match="unreachable"):
        rep.run_once()
    assert target.refused >= 2  # retried with backoff before giving up
    assert rep.ledger.watermark == ""  # the pass waits to resume where it stopped
    target.down.clear()
    assert rep.run_once().copied == 1
    rep.close()

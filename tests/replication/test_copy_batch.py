"""A group of copies run by one worker: each copy has its own result, an outage or a stop
leaves the rest unattempted (still pending), and grouping respects its size bounds."""

from __future__ import annotations

from collections import deque

from replication_doubles import CorruptingStore, FlakyStore

from edgeloop.errors import ChecksumMismatch, StoreUnavailable
from edgeloop.replication.copier import NOT_ATTEMPTED, CopyOutcome, copy_batch
from edgeloop.replication.ledger import LedgerEntry
from edgeloop.replication.plan import CopyTask
from edgeloop.replication.replicator import GROUP_MAX_BYTES, GROUP_MAX_OBJECTS, _next_group
from edgeloop.store import MemoryStore


def _source(n: int) -> tuple[MemoryStore, list[CopyTask]]:
    store = MemoryStore()
    tasks = []
    for i in range(n):
        info = store.put(f"k/{i}", bytes([i]) * 10)
        tasks.append(CopyTask(info.key, info.size, info.sha256))
    return store, tasks


def test_each_copy_has_its_own_result() -> None:
    source, tasks = _source(4)
    target = CorruptingStore(MemoryStore(), times=1)  # only the first put is corrupted
    results = copy_batch(source, target, tasks)
    assert isinstance(results[0], ChecksumMismatch)
    assert all(isinstance(r, CopyOutcome) for r in results[1:])
    assert sorted(i.key for i in target.inner.list()) == ["k/1", "k/2", "k/3"]


def test_an_outage_leaves_the_rest_unattempted() -> None:
    source, tasks = _source(5)
    target = FlakyStore(MemoryStore())
    target.down.set()
    results = copy_batch(source, target, tasks)
    assert isinstance(results[0], StoreUnavailable)
    assert results[1:] == [NOT_ATTEMPTED] * 4
    assert target.refused == 1  # the others did not wait on the dead store too


def test_a_stop_leaves_the_rest_unattempted_after_the_copy_under_way() -> None:
    source, tasks = _source(3)
    target = MemoryStore()
    results = copy_batch(source, target, tasks, keep_going=lambda: False)
    assert isinstance(results[0], CopyOutcome)
    assert results[1:] == [NOT_ATTEMPTED, NOT_ATTEMPTED]
    assert [i.key for i in target.list()] == ["k/0"]


def _entry(key: str, size: int) -> LedgerEntry:
    return LedgerEntry(key, None, size, 0, False)


def test_groups_hold_small_objects_up_to_the_bounds_and_large_ones_alone() -> None:
    small = [_entry(f"s{i}", 1000) for i in range(GROUP_MAX_OBJECTS + 3)]
    big = _entry("big", GROUP_MAX_BYTES * 4)
    waiting = deque([*small[:2], big, *small[2:]])
    assert [e.key for e in _next_group(waiting)] == ["s0", "s1"]
    assert [e.key for e in _next_group(waiting)] == ["big"]
    assert len(_next_group(waiting)) == GROUP_MAX_OBJECTS
    assert len(_next_group(waiting)) == 1
    assert not waiting
    half = GROUP_MAX_BYTES // 2
    waiting = deque([_entry("a", half), _entry("b", half), _entry("c", 1)])
    assert [e.key for e in _next_group(waiting)] == ["a", "b"]

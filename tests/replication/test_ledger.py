"""The SQLite ledger: idempotent enqueue, versions, retries, cursor and watermark."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.errors import ReplicationError
from edgeloop.replication.ledger import Copied, Ledger
from edgeloop.replication.plan import CopyTask


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.db", pair="a -> b")


def test_enqueue_is_idempotent_and_done_entries_stay_done(ledger: Ledger) -> None:
    assert ledger.enqueue([CopyTask("k", 1, "s1")], journal_cursor=5) == 1
    assert ledger.enqueue([CopyTask("k", 1, "s1")], journal_cursor=6) == 0
    assert ledger.backlog() == 1
    assert ledger.journal_cursor == 6
    ledger.mark_done([Copied("k", "s1", 1, "s1")])
    assert ledger.enqueue([CopyTask("k", 1, "s1")]) == 0
    assert ledger.backlog() == 0
    # A new version of the key is new work.
    assert ledger.enqueue([CopyTask("k", 2, "s2")]) == 1
    assert ledger.backlog() == 1


def test_done_only_for_the_version_still_wanted(ledger: Ledger) -> None:
    ledger.enqueue([CopyTask("k", 1, "v1")])
    ledger.enqueue([CopyTask("k", 1, "v2")])  # newer version arrives while v1 is in flight
    ledger.mark_done([Copied("k", "v1", 1, "v1")])
    assert ledger.backlog() == 1
    assert ledger.record("k").sha256 == "v2"  # type: ignore[union-attr]
    ledger.mark_done([Copied("k", "v2", 1, "v1")])  # the copy read v2 from the source
    assert ledger.backlog() == 0


def test_retries_then_fails_and_failed_is_requeued_when_seen_again(ledger: Ledger) -> None:
    ledger.enqueue([CopyTask("k", 1, "s")])
    assert not ledger.mark_retry("k", "bad bytes", next_attempt=0, give_up_after=3)
    assert not ledger.mark_retry("k", "bad bytes", next_attempt=0, give_up_after=3)
    assert ledger.mark_retry("k", "bad bytes", next_attempt=0, give_up_after=3)
    counts = ledger.counts()
    assert (counts.pending, counts.failed) == (0, 1)
    assert ledger.failures() == [("k", 3, "bad bytes")]
    assert ledger.enqueue([CopyTask("k", 1, "s")]) == 1
    assert ledger.due(10)[0].attempts == 0


def test_due_respects_next_attempt_and_exclusions(ledger: Ledger) -> None:
    ledger.enqueue([CopyTask(f"k{i}", 1, "s") for i in range(5)])
    ledger.mark_retry("k0", "x", next_attempt=1e12, give_up_after=10)
    keys = [e.key for e in ledger.due(10, exclude={"k1"})]
    assert keys == ["k2", "k3", "k4"]
    assert ledger.next_due_time() == 0


def test_watermark_and_pass(ledger: Ledger) -> None:
    assert ledger.watermark is None
    ledger.start_pass()
    assert ledger.watermark == ""
    ledger.enqueue([], watermark="m")
    ledger.start_pass()  # a pass under way is kept
    assert ledger.watermark == "m"
    ledger.enqueue([], pass_done=True)
    assert ledger.watermark is None
    assert ledger.last_full_pass is not None


def test_state_survives_reopening_and_pairs_do_not_mix(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    first = Ledger(path, pair="a -> b")
    first.enqueue([CopyTask("k", 1, "s")], journal_cursor=9)
    first.close()
    again = Ledger(path, pair="a -> b")
    assert (again.backlog(), again.journal_cursor) == (1, 9)
    assert again.recover() == 1
    assert again.due(1)[0].check_target
    again.close()
    with pytest.raises(ReplicationError, match="belongs to"):
        Ledger(path, pair="a -> c")


def test_records_between_reads_one_key_range(ledger: Ledger) -> None:
    ledger.enqueue([CopyTask(f"k/{i}", i, f"s{i}") for i in range(6)])
    ledger.mark_done([Copied("k/2", "s2", 2, "s2")])
    records = ledger.records_between("k/1", "k/4")
    assert sorted(records) == ["k/2", "k/3", "k/4"]
    assert records["k/2"].state == "done"
    assert records["k/3"].state == "pending"
    assert records["k/3"].sha256 == "s3"
    assert sorted(ledger.records_between(None, "k/0")) == ["k/0"]

"""Triggers: one run per window with duplicated and shuffled events, max_wait, drift, cron."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edgeloop.journal import SQLiteJournal
from edgeloop.model.events import Event, EventType
from edgeloop.pipeline.cron import Cron
from edgeloop.pipeline.runs import RunStore
from edgeloop.pipeline.triggers import TriggerWorker, member_of
from edgeloop.workspace.config import TriggerRule


def replicated(key: str, sha: str = "", event_id: str | None = None) -> Event:
    extra = {"id": event_id} if event_id else {}
    return Event(
        type=EventType.OBJECT_REPLICATED,
        site="core",
        subject=key,
        data={"key": key, "size": 10, "sha256": sha or f"sha-{key}", "source_site": "edge-1"},
        **extra,
    )


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make_worker(
    tmp_path: Path, rules: list[TriggerRule], clock: Clock | None = None
) -> tuple[TriggerWorker, SQLiteJournal, list[str]]:
    journal = SQLiteJournal(tmp_path / "journal.db")
    runs = RunStore(tmp_path / "pipelines.db")
    started: list[str] = []

    def start(run_id: str) -> None:
        if runs.start_run(run_id):
            started.append(run_id)
            runs.finish_run(run_id, "succeeded")

    worker = TriggerWorker(
        rules, journal, runs, start, lambda rule: ("recorder", {}, "inline"), clock=clock or Clock()
    )
    return worker, journal, started


RULE = TriggerRule(
    name="batches",
    pipeline="recorder",
    event="object.replicated",
    prefix="captures/churn/",
    min_records=5,
)


def window_members(worker: TriggerWorker, run_id: str) -> list[str]:
    params: dict[str, Any] = worker.runs.get_run(run_id).params
    return sorted(m["key"] for m in params["window"]["members"])


def test_duplicated_and_shuffled_events_make_one_run_per_window(tmp_path: Path) -> None:
    worker, journal, started = make_worker(tmp_path, [RULE])
    keys = [f"captures/churn/edge-1/2026/01/01/b{i:02d}.parquet" for i in range(10)]
    events = [replicated(k) for k in keys]
    # each object replicated up to three times (new event ids: the journal keeps them all),
    # plus exact re-deliveries (same id: the journal drops them), all shuffled
    noisy = events + [replicated(k) for k in keys[::2]] + [replicated(k) for k in keys[::3]]
    noisy += events[:4]
    random.Random(7).shuffle(noisy)
    for i in range(0, len(noisy), 4):  # arrive in several polls
        journal.append_many(noisy[i : i + 4])
        worker.poll()
        worker.start_pending()
    worker.poll()
    worker.start_pending()
    assert len(started) == 2
    seen = [window_members(worker, r) for r in started]
    assert all(len(m) == 5 for m in seen)
    assert sorted(seen[0] + seen[1]) == keys  # every object in exactly one window
    # replaying the whole journal from scratch (a lost cursor) starts nothing new
    journal.commit("pipeline-triggers", 0)
    worker.poll()
    assert worker.start_pending() == 0
    assert len(started) == 2


def test_other_prefixes_and_types_are_ignored(tmp_path: Path) -> None:
    assert member_of(RULE, replicated("labels/churn/x.parquet")) is None
    drift = Event(type=EventType.DRIFT_DETECTED, site="core", subject="models/churn")
    assert member_of(RULE, drift) is None
    worker, journal, started = make_worker(tmp_path, [RULE])
    journal.append_many([replicated(f"labels/churn/{i}") for i in range(9)])
    worker.poll()
    worker.start_pending()
    assert started == []


def test_same_key_new_bytes_is_a_new_record(tmp_path: Path) -> None:
    a1, a2 = (
        member_of(RULE, replicated("captures/churn/a", "s1")),
        member_of(RULE, replicated("captures/churn/a", "s2")),
    )
    assert a1 and a2 and a1[0] != a2[0]


def test_max_wait_closes_a_short_window_once(tmp_path: Path) -> None:
    rule = RULE.model_copy(update={"max_wait": "10m"})
    clock = Clock()
    worker, journal, started = make_worker(tmp_path, [rule], clock)
    journal.append_many([replicated(f"captures/churn/k{i}") for i in range(2)])
    worker.poll()
    worker.start_pending()
    assert started == []  # 2 < min_records and not waited yet
    clock.now += timedelta(minutes=10)
    worker.poll()
    worker.poll()
    worker.start_pending()
    assert len(started) == 1
    assert len(window_members(worker, started[0])) == 2
    clock.now += timedelta(hours=1)  # an empty window never fires
    worker.poll()
    assert worker.start_pending() == 0


def test_drift_event_triggers_once(tmp_path: Path) -> None:
    rule = TriggerRule(name="on-drift", pipeline="recorder", event="drift.detected")
    worker, journal, started = make_worker(tmp_path, [rule])
    drift = Event(
        type=EventType.DRIFT_DETECTED,
        site="core",
        subject="models/churn",
        data={"features": ["age"]},
    )
    journal.append(drift)
    journal.append(drift)  # same id: a re-delivery
    worker.poll()
    worker.poll()
    worker.start_pending()
    assert len(started) == 1


def test_cron_fires_once_per_slot(tmp_path: Path) -> None:
    rule = TriggerRule(name="nightly", pipeline="recorder", event="schedule", cron="0 2 * * *")
    clock = Clock()
    clock.now = datetime(2026, 1, 1, 1, 59, 30, tzinfo=UTC)
    worker, _journal, started = make_worker(tmp_path, [rule], clock)
    worker.poll()
    assert worker.start_pending() == 0
    clock.now = datetime(2026, 1, 1, 2, 0, 10, tzinfo=UTC)
    worker.poll()
    clock.now = datetime(2026, 1, 1, 2, 0, 50, tzinfo=UTC)
    worker.poll()
    worker._cron_checked.clear()  # a restarted worker checks the same minute again
    worker.poll()
    worker.start_pending()
    assert len(started) == 1
    assert worker.runs.get_run(started[0]).window_id == "nightly:20260101T0200"


def test_manual_fire_is_idempotent_by_window(tmp_path: Path) -> None:
    rule = TriggerRule(name="by-hand", pipeline="recorder", event="manual")
    worker, _journal, started = make_worker(tmp_path, [rule])
    run_a = worker.fire("by-hand", "by-hand:ticket-42")
    run_b = worker.fire("by-hand", "by-hand:ticket-42")
    worker.start_pending()
    assert run_a == run_b and started == [run_a]


def test_cron_parsing() -> None:
    cron = Cron("*/15 9-17 * * 1-5")
    assert cron.matches(datetime(2026, 1, 5, 9, 45, tzinfo=UTC))  # a Monday
    assert not cron.matches(datetime(2026, 1, 4, 9, 45, tzinfo=UTC))  # a Sunday
    assert not cron.matches(datetime(2026, 1, 5, 9, 50, tzinfo=UTC))
    from edgeloop.errors import ConfigError

    for bad in ("* * *", "61 * * * *", "*/0 * * * *", "a * * * *"):
        with pytest.raises(ConfigError):
            Cron(bad)

"""The core's monitoring schedule: which windows are due, each judged once per site (also
across restarts and by-hand reports), missed windows caught up, live quality scored on the
same schedule with one event per bucket, and one model's failure not stopping the others."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.journal import JournalSink, SQLiteJournal
from edgeloop.model.events import Event, EventType
from edgeloop.monitor import DriftJob, build_profile, save_profile
from edgeloop.monitor.quality import QUALITY_DEGRADED
from edgeloop.monitor.scheduler import MonitorScheduler, due_windows, monitor_once
from edgeloop.pipeline.triggers import member_of
from edgeloop.store import LocalStore, ObjectStore
from edgeloop.testing.driftdata import T0, features, predictions_for, put_parquet
from edgeloop.workspace import Workspace
from edgeloop.workspace.config import MonitoringConfig, TriggerRule
from edgeloop.workspace.loader import parse_config

H = timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore(tmp_path / "core")
    yield opened
    opened.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[SQLiteJournal]:
    opened = SQLiteJournal(tmp_path / "journal.db")
    yield opened
    opened.close()


def monitoring(text: str = "") -> MonitoringConfig:
    base = "project: p\nsites: [{name: core, tier: core, store: s}]\nmonitoring:\n"
    return parse_config(base + "  grace: 0s\n  catch_up: 3h\n" + text).monitoring


def profiled(store: ObjectStore, rng: np.random.Generator, model: str = "churn") -> None:
    cols = features(rng, 4000)
    save_profile(store, build_profile(model, "1", cols, predictions_for(cols)))


def test_due_windows_are_aligned_after_grace_and_bounded_by_catch_up() -> None:
    now = T0 + timedelta(minutes=3)  # 10:03
    assert due_windows(now, H, timedelta(0), timedelta(0)) == [(T0 - H, T0)]
    # 10:03 with 5 minutes' grace: the 9:00-10:00 window waits; 8:00-9:00 is the latest due.
    assert due_windows(now, H, timedelta(minutes=5), timedelta(0)) == [(T0 - 2 * H, T0 - H)]
    caught = due_windows(now, H, timedelta(0), 2 * H)
    assert caught == [(T0 - 3 * H, T0 - 2 * H), (T0 - 2 * H, T0 - H), (T0 - H, T0)]
    # A catch-up shorter than a window still judges the latest window.
    assert due_windows(now, timedelta(days=1), timedelta(0), H) == [
        (T0.replace(hour=0) - timedelta(days=1), T0.replace(hour=0))
    ]


def test_each_window_is_judged_once_and_missed_windows_are_caught_up(
    store: LocalStore,
    journal: SQLiteJournal,
    rng: np.random.Generator,
    write_captures: Callable[..., object],
) -> None:
    profiled(store, rng)
    write_captures(store, "edge-a", 800)
    write_captures(store, "edge-b", 800, shift=1.0)  # T0 to T0 + 1h
    write_captures(store, "edge-b", 800, shift=1.0, start=T0 + 2 * H, batch="b2")
    scheduler = MonitorScheduler(store, monitoring(), JournalSink(journal))

    first = scheduler.tick(T0 + H + timedelta(minutes=1))  # windows 7-8, 8-9, 9-10, 10-11
    judged = {(o.report.site, o.report.window_end): o.report.status for o in first.drift}
    assert len(judged) == 8 and first.failed == {}
    assert judged[("edge-a", T0 + H)] == "no_drift"
    assert judged[("edge-b", T0 + H)] == "drift"
    assert judged[("edge-b", T0)] == "empty"
    assert first.emitted == 1

    assert scheduler.tick(T0 + H + timedelta(minutes=6)).drift == []  # nothing new is due
    # By hand, the next window first; the schedule then leaves it alone.
    DriftJob(store, monitoring(), JournalSink(journal)).run("churn", end=T0 + 2 * H)
    # The core was down until 14:10: 11-12 was judged by hand, 12-13 and 13-14 are caught up.
    later = scheduler.tick(T0 + 4 * H + timedelta(minutes=10))
    ends = sorted({o.report.window_end for o in later.drift})
    assert ends == [T0 + 3 * H, T0 + 4 * H]
    assert {(o.report.site, o.report.window_end) for o in later.drift if o.emitted} == {
        ("edge-b", T0 + 3 * H)
    }
    events = journal.read(types=[EventType.DRIFT_DETECTED])
    assert [(e.event.site, e.event.data["window_end"]) for e in events] == [
        ("edge-b", (T0 + H).isoformat()),
        ("edge-b", (T0 + 3 * H).isoformat()),
    ]


def test_captures_arriving_late_have_their_window_judged_again(
    store: LocalStore,
    journal: SQLiteJournal,
    rng: np.random.Generator,
    write_captures: Callable[..., object],
) -> None:
    # edge-b is cut off from 10:00 to 11:00: its window is judged while its captures are
    # still at the edge; they arrive (drifted) at 11:30 and the window is judged again.
    profiled(store, rng)
    write_captures(store, "edge-a", 800)
    write_captures(store, "edge-b", 300, start=T0 - H, batch="before")
    scheduler = MonitorScheduler(store, monitoring(), JournalSink(journal))
    first = scheduler.tick(T0 + H + timedelta(minutes=1))
    judged = {(o.report.site, o.report.window_end): o.report.status for o in first.drift}
    assert judged[("edge-b", T0 + H)] == "empty" and first.emitted == 0

    write_captures(store, "edge-b", 800, shift=1.0, batch="late")  # rows in 10:00-11:00
    late = scheduler.tick(T0 + H + timedelta(minutes=30))
    assert [(o.report.site, o.report.window_end, o.report.status) for o in late.drift] == [
        ("edge-b", T0 + H, "drift")
    ]
    assert late.emitted == 1
    assert scheduler.tick(T0 + H + timedelta(minutes=40)).drift == []  # seen: not again

    # A late batch whose rows are all in a window not yet due changes no judged window.
    write_captures(store, "edge-b", 300, start=T0 + H, batch="next")
    assert scheduler.tick(T0 + H + timedelta(minutes=50)).drift == []
    events = journal.read(types=[EventType.DRIFT_DETECTED])
    assert [(e.event.site, e.event.data["window_end"]) for e in events] == [
        ("edge-b", (T0 + H).isoformat())
    ]


def test_quality_is_scored_each_pass_and_raises_once_per_bucket(
    store: LocalStore, journal: SQLiteJournal, rng: np.random.Generator
) -> None:
    import pyarrow as pa

    n = 200
    ids = [f"edge-a-{i}" for i in range(n)]
    captures = pa.table(
        {
            "request_id": ids,
            "time": pa.array([T0 + timedelta(seconds=10 * i) for i in range(n)],
                             pa.timestamp("us", tz="UTC")),
            "version": ["1"] * n,
            "inputs": pa.StructArray.from_arrays([pa.array(rng.normal(size=n))], ["x"]),
            "outputs": pa.array(["1"] * n),
        }
    )  # fmt: skip
    put_parquet(store, f"captures/churn/edge-a/{T0:%Y/%m/%d}/b0.parquet", captures)
    labels = pa.table({"request_id": ids, "label": ["1"] * 120 + ["0"] * 80})  # accuracy 0.6
    put_parquet(store, f"labels/churn/edge-a/{T0:%Y/%m/%d}/b0.parquet", labels)
    config = monitoring(
        "  models:\n    churn:\n      quality: {metric: accuracy, bound: 0.8, bucket: 1h}\n"
    )
    scheduler = MonitorScheduler(store, config, JournalSink(journal))
    for minutes in (30, 40, 90):  # the bucket is scored while it fills and after
        done = scheduler.tick(T0 + timedelta(minutes=minutes))
        # No profile: the drift job fails with its message; live quality still runs.
        assert "reference profile" in done.failed["churn drift"]
        assert "churn quality" not in done.failed
    (report,) = done.quality
    assert [p.value for p in report.points] == [pytest.approx(0.6)]
    events = journal.read(types=[QUALITY_DEGRADED])
    assert [e.event.id for e in events] == [f"quality:churn:edge-a:1:{T0:%Y%m%dT%H%M%SZ}"]


def test_one_model_failing_does_not_stop_the_others(
    store: LocalStore,
    journal: SQLiteJournal,
    rng: np.random.Generator,
    write_captures: Callable[..., object],
) -> None:
    profiled(store, rng)
    profiled(store, rng, "broken")
    write_captures(store, "edge-a", 500)
    store.put(f"captures/broken/edge-a/{T0:%Y/%m/%d}/bad.parquet", b"not parquet")
    done = MonitorScheduler(store, monitoring(), JournalSink(journal)).tick(T0 + H)
    assert "not a readable Parquet batch" in done.failed["broken drift"]
    assert [(o.report.model, o.report.status) for o in done.drift][-1] == ("churn", "no_drift")


def test_drift_trigger_rule_can_watch_one_model() -> None:
    rule = TriggerRule(name="on-drift", pipeline="retrain", event="drift.detected", model="churn")
    churn = Event(
        type=EventType.DRIFT_DETECTED, site="edge-b", subject="r", data={"model": "churn"}
    )
    other = Event(type=EventType.DRIFT_DETECTED, site="edge-b", subject="r", data={"model": "x"})
    assert member_of(rule, churn) is not None
    assert member_of(rule, other) is None


def test_core_once_runs_the_schedule_unless_told_not_to(
    workspace_dir: Path, rng: np.random.Generator, write_captures: Callable[..., object]
) -> None:
    ws = Workspace.load(workspace_dir)
    store = ws.store("core")
    profiled(store, rng)
    write_captures(store, "edge-a", 300)
    config = workspace_dir / "edgeloop.yaml"
    config.write_text(config.read_text() + "monitoring:\n  catch_up: 0s\n")
    w = ["--workspace", str(workspace_dir)]
    runner = CliRunner()
    result = runner.invoke(app, ["core", "--once", "--no-monitor", *w])
    assert result.exit_code == 0, result.output
    assert list(store.list("monitoring/reports/")) == []
    result = runner.invoke(app, ["core", "--once", *w])
    assert result.exit_code == 0, result.output
    # Only the latest due window (an empty one: the captures are older) is judged.
    assert [i.key.split("/")[3] for i in store.list("monitoring/reports/")] == ["edge-a"] * 2

    config.write_text(config.read_text() + "  every: null\n")
    assert monitor_once(Workspace.load(workspace_dir), "core") is None
    config.write_text(config.read_text().replace("every: null", "every: 0s"))
    result = runner.invoke(app, ["core", *w])
    assert result.exit_code != 0 and "bad duration '0s'" in result.output

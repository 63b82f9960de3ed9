"""The demo's timeline: journal events become loop steps; frequent ones are counted; loop
timings come out stage by stage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgeloop.demo.timeline import Step, Timeline, describe, loop_timing
from edgeloop.model.events import Event

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def event(type_: str, subject: str = "", site: str = "core", **data: object) -> Event:
    return Event(type=type_, site=site, subject=subject, data=dict(data), time=T0)


def test_loop_events_become_steps_of_their_stage() -> None:
    cases = [
        (event("object.created", "captures/m/edge-a/2026/11/25/b.parquet", "edge-a"), "capture"),
        (
            event("object.replicated", "labels/m/edge-b/x.parquet", source_site="edge-b"),
            "replicate",
        ),
        (event("run.started", "pipelines/retrain-tabular/runs/w-new-data-1"), "trigger"),
        (event("run.succeeded", "pipelines/retrain-tabular/runs/w-new-data-1"), "retrain"),
        (event("model.registered", "models/m/2/", name="m", version=2, signer="ab"), "register"),
        (event("rollout.started", "ro_1", **{"from": "1", "to": "2", "waves": [1, 1]}), "rollout"),
        (event("rollout.wave", "ro_1", wave=0, sites=1), "rollout"),
        (event("drift.detected", "monitoring/reports/m/edge-b/x", site="edge-b"), "watch"),
    ]
    for ev, stage in cases:
        step = describe(ev, origin="edge-a" if ev.type == "object.created" else "core")
        assert step is not None and step.stage == stage, ev.type
        assert step.time == T0.timestamp()


def test_details_are_carried() -> None:
    replicated = describe(
        event("object.replicated", "labels/m/edge-b/x.parquet", source_site="edge-b"),
        origin="core",
    )
    assert replicated is not None and replicated.site == "edge-b"
    run = describe(event("run.started", "pipelines/retrain-tabular/runs/w-1"), origin="core")
    assert run is not None and run.data == {"run": "w-1"} and "w-1" in run.text
    registered = describe(event("model.registered", name="m", version=3, signer="s"), origin="core")
    assert registered is not None and registered.data == {"version": "3"}
    rollout = describe(
        event("rollout.started", **{"from": "2", "to": "3", "waves": [1, 1]}), origin="core"
    )
    assert rollout is not None and rollout.data == {"version": "3"} and "2 -> 3" in rollout.text


def test_events_outside_the_loop_and_package_writes_are_not_steps() -> None:
    assert describe(event("site.heartbeat"), origin="core") is None
    assert describe(event("object.created", "models/m/2/model.onnx"), origin="core") is None
    assert describe(event("my.own.event"), origin="core") is None


def test_frequent_events_are_counted_and_shown_once_per_site() -> None:
    timeline = Timeline()
    shown = []
    for i in range(3):
        for site in ("edge-a", "edge-b"):
            step = Step(float(i), "capture", site, "capture batch written", "object.created")
            shown.append(timeline.add(step))
    assert shown == [True, True, False, False, False, False]
    assert timeline.counts[("object.created", "edge-a")] == 3
    assert [s.text for s in timeline.steps] == ["first capture batch written"] * 2


def test_steps_are_kept_in_time_order_and_found_by_data() -> None:
    timeline = Timeline()
    timeline.add(Step(5.0, "register", "core", "v2", "model.registered", {"version": "2"}))
    timeline.add(Step(1.0, "trigger", "core", "run", "run.started"))
    assert [s.time for s in timeline.steps] == [1.0, 5.0]
    found = timeline.first("model.registered", version="2")
    assert found is not None and found.time == 5.0
    assert timeline.first("model.registered", version="9") is None


def test_loop_timing_splits_the_loop_into_stages() -> None:
    run = {"created": 100.0, "started": 100.5, "finished": 103.0, "trigger": "drift"}
    timing = loop_timing(
        "2", run, 102.5, 103.5, {"edge-a": 104.0, "edge-b": 105.0}, ["edge-a", "edge-b"]
    )
    assert timing is not None
    assert timing.stages == pytest.approx(
        {
            "window closed -> run started": 0.5,
            "retrain, gate, register + sign": 2.0,
            "registered -> rollout started": 1.0,
            "rollout -> served at every edge": 1.5,
        }
    )
    assert timing.total == pytest.approx(5.0)


def test_loop_timing_waits_for_every_edge_and_the_rollout() -> None:
    run = {"created": 0.0, "started": 0.0, "finished": 1.0}
    assert loop_timing("2", run, 1.0, 2.0, {"edge-a": 3.0}, ["edge-a", "edge-b"]) is None
    assert loop_timing("2", run, 1.0, None, {"edge-a": 3.0}, ["edge-a"]) is None

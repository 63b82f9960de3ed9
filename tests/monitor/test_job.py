"""The drift job over a real store (directory and S3): drift injected at one site is found,
reported as JSON and HTML with plots, and raises exactly one drift.detected however often the
job runs; windows, versions, JSON inputs and odd batches are handled."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from edgeloop.errors import MonitoringError, ProfileNotFound
from edgeloop.journal import JournalSink, SQLiteJournal
from edgeloop.model.events import EventType
from edgeloop.monitor import DriftJob, build_profile, drift_event_id, save_profile
from edgeloop.monitor.captures import discover_sites
from edgeloop.store import LocalStore, ObjectStore, open_store
from edgeloop.testing.driftdata import T0, features, predictions_for, put_parquet
from edgeloop.workspace.config import MonitoringConfig

END = T0 + timedelta(hours=1)


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "file":
        opened: ObjectStore = LocalStore(tmp_path / "core")
    else:
        opened = open_store(request.getfixturevalue("s3_url"))
    yield opened
    opened.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[SQLiteJournal]:
    j = SQLiteJournal(tmp_path / "journal.db")
    yield j
    j.close()


def profiled(store: ObjectStore, rng: np.random.Generator, version: str = "1") -> None:
    cols = features(rng, 5000)
    save_profile(store, build_profile("churn", version, cols, predictions_for(cols)))


def test_drift_at_one_site_is_reported_and_raises_one_event(
    store: ObjectStore,
    journal: SQLiteJournal,
    rng: np.random.Generator,
    write_captures: Callable[..., object],
) -> None:
    profiled(store, rng)
    write_captures(store, "edge-a", 1500)
    write_captures(store, "edge-b", 1500, shift=1.0)
    job = DriftJob(store, MonitoringConfig(), JournalSink(journal))

    outcomes = {o.report.site: o for o in job.run("churn", end=END)}
    assert set(outcomes) == {"edge-a", "edge-b"}
    assert outcomes["edge-a"].report.status == "no_drift"
    assert outcomes["edge-a"].event is None
    drifted = outcomes["edge-b"]
    assert drifted.report.status == "drift"
    assert {"amount", "channel"} <= set(drifted.report.drifted)
    assert drifted.emitted

    # The report is in the store as JSON and as an HTML page with one plot per feature.
    with store.get(drifted.keys["json"]) as reader:
        saved = orjson.loads(reader.read())
    assert saved["status"] == "drift" and saved["site"] == "edge-b"
    with store.get(drifted.keys["html"]) as reader:
        page = reader.read().decode()
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    # Each plot is well-formed SVG (our own output, so the stdlib parser is fine here).
    svgs = [
        ET.fromstring("<svg" + part.split("</svg>")[0] + "</svg>")  # noqa: S314
        for part in page.split("<svg")[1:]
    ]
    assert len(svgs) == 4  # amount, age, channel, prediction
    assert all(svg.findall(".//{http://www.w3.org/2000/svg}rect") for svg in svgs)

    # Running again (a retry, a second scheduler) adds no event: one window, one event.
    for _ in range(3):
        again = job.run("churn", end=END)
        assert [o.emitted for o in again if o.event] == [False]
    events = journal.read(types=[EventType.DRIFT_DETECTED])
    assert len(events) == 1
    event = events[0].event
    assert event.id == drift_event_id("churn", "edge-b", T0, END)
    assert event.site == "edge-b" and event.data["model"] == "churn"
    assert event.data["report"] == drifted.keys["json"]
    assert "amount" in event.data["drifted"]


def test_only_rows_inside_the_window_count(
    store: ObjectStore, rng: np.random.Generator, write_captures: Callable[..., object]
) -> None:
    profiled(store, rng)
    write_captures(store, "edge-a", 800, batch="now")
    # Drifted data an hour earlier must not leak into this window.
    write_captures(store, "edge-a", 800, shift=2.0, start=T0 - timedelta(hours=1), batch="old")
    (outcome,) = DriftJob(store, MonitoringConfig()).run("churn", sites=["edge-a"], end=END)
    assert outcome.report.rows == 800
    assert outcome.report.status == "no_drift"
    (earlier,) = DriftJob(store, MonitoringConfig()).run("churn", sites=["edge-a"], end=T0)
    assert earlier.report.status == "drift" and earlier.report.rows == 800


def test_window_across_midnight_reads_both_days(
    store: ObjectStore, rng: np.random.Generator, write_captures: Callable[..., object]
) -> None:
    profiled(store, rng)
    midnight = T0.replace(hour=0) + timedelta(days=1)
    write_captures(store, "edge-a", 300, start=midnight - timedelta(minutes=30), batch="late",
                   span=timedelta(minutes=30))  # fmt: skip
    write_captures(store, "edge-a", 300, start=midnight, batch="early", span=timedelta(minutes=30))
    (outcome,) = DriftJob(store, MonitoringConfig()).run(
        "churn", sites=["edge-a"], end=midnight + timedelta(minutes=30)
    )
    assert outcome.report.rows == 600


def test_empty_window_writes_a_report_and_no_event(
    store: ObjectStore, journal: SQLiteJournal, rng: np.random.Generator
) -> None:
    profiled(store, rng)
    job = DriftJob(store, MonitoringConfig(), JournalSink(journal))
    (outcome,) = job.run("churn", sites=["edge-a"], end=END)
    assert outcome.report.status == "empty"
    assert outcome.event is None and journal.last_seq() == 0
    with store.get(outcome.keys["json"]) as reader:
        assert orjson.loads(reader.read())["status"] == "empty"


def test_json_inputs_and_mixed_batches_are_combined(
    store: ObjectStore, rng: np.random.Generator, write_captures: Callable[..., object]
) -> None:
    profiled(store, rng)
    write_captures(store, "edge-a", 600, inputs="json", batch="j")
    write_captures(store, "edge-a", 600, batch="s")
    (outcome,) = DriftJob(store, MonitoringConfig()).run("churn", sites=["edge-a"], end=END)
    assert outcome.report.rows == 1200
    assert outcome.report.status == "no_drift"
    assert all(f.status == "ok" for f in outcome.report.features)


def test_profile_of_the_most_served_version_is_used(
    store: ObjectStore, rng: np.random.Generator, write_captures: Callable[..., object]
) -> None:
    profiled(store, rng, "1")
    shifted = features(rng, 5000, shift=1.0)
    save_profile(store, build_profile("churn", "2", shifted, predictions_for(shifted)))
    write_captures(store, "edge-a", 900, version="1")
    (outcome,) = DriftJob(store, MonitoringConfig()).run("churn", sites=["edge-a"], end=END)
    assert outcome.report.version == "1" and outcome.report.status == "no_drift"
    (forced,) = DriftJob(store, MonitoringConfig()).run(
        "churn", sites=["edge-a"], end=END, version="2"
    )
    assert forced.report.version == "2" and forced.report.status == "drift"


def test_missing_profile_and_bad_batch_give_clear_errors(
    store: ObjectStore, write_captures: Callable[..., object]
) -> None:
    write_captures(store, "edge-a", 200)
    with pytest.raises(ProfileNotFound, match="edgeloop drift profile"):
        DriftJob(store, MonitoringConfig()).run("churn", sites=["edge-a"], end=END)
    store.put(f"captures/churn/edge-a/{T0:%Y/%m/%d}/broken.parquet", b"not parquet")
    with pytest.raises(MonitoringError, match=r"broken\.parquet"):
        from edgeloop.monitor.captures import read_window

        read_window(store, "churn", "edge-a", T0, END)


def test_sites_are_discovered_from_keys(store: ObjectStore, rng: np.random.Generator) -> None:
    from edgeloop.testing.driftdata import capture_table

    for site in ("edge-a", "edge-a-2", "edge-b", "z9"):
        table = capture_table(rng, site, 5)
        put_parquet(store, f"captures/churn/{site}/2026/11/24/x.parquet", table)
        put_parquet(store, f"captures/churn/{site}/2026/11/25/y.parquet", table)
    put_parquet(store, "captures/other/edge-q/2026/11/24/x.parquet", capture_table(rng, "q", 5))
    assert discover_sites(store, "churn") == ["edge-a", "edge-a-2", "edge-b", "z9"]


def test_batches_that_disagree_on_types_are_combined_not_refused() -> None:
    import pyarrow as pa

    from edgeloop.monitor.captures import combine_batches

    times = pa.array([T0, T0], pa.timestamp("us", tz="UTC"))
    first = pa.table({"time": times, "x": pa.array([1, 2]), "tag": pa.array(["a", "b"])})
    second = pa.table({"time": times, "x": pa.array([0.5, None]), "tag": pa.array([1, 2])})
    third = pa.table({"time": times, "prediction": pa.array(["1", "0"])})
    data = combine_batches([first, second, third])
    assert data.rows == 6
    assert data.features["x"].type == pa.float64()
    assert data.features["x"].to_pylist() == [1.0, 2.0, 0.5, None, None, None]
    assert data.features["tag"].to_pylist() == ["a", "b", "1", "2", None, None]
    assert data.predictions is not None
    assert data.predictions.to_pylist() == [None, None, None, None, "1", "0"]

"""Live quality: metrics agree with scikit-learn, captures join labels by request id, buckets
per site and version, and a breach raises quality.degraded once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from edgeloop.journal import JournalSink, SQLiteJournal
from edgeloop.monitor.quality import (
    QUALITY_DEGRADED,
    QualityJob,
    accuracy,
    breaches,
    macro_f1,
)
from edgeloop.monitor.quality import (
    mean_absolute_error as mae,
)
from edgeloop.store import LocalStore, ObjectStore
from edgeloop.testing.driftdata import T0, put_parquet
from edgeloop.workspace.config import MonitoringConfig
from edgeloop.workspace.loader import parse_config


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.choice(["a", "b", "c"], size=200)
    predicted = np.where(rng.random(200) < 0.7, truth, rng.choice(["a", "b", "c", "d"], size=200))
    assert accuracy(truth, predicted) == pytest.approx(accuracy_score(truth, predicted))
    assert macro_f1(truth, predicted) == pytest.approx(
        f1_score(truth, predicted, average="macro", zero_division=0)
    )
    y, p = rng.normal(size=100), rng.normal(size=100)
    assert mae(y, p) == pytest.approx(mean_absolute_error(y, p))


def test_labels_and_predictions_compare_as_text_and_empty_is_nan() -> None:
    assert accuracy([1, 0, 1], ["1", "0", "0"]) == pytest.approx(2 / 3)
    assert np.isnan(accuracy([], []))
    assert np.isnan(mae([None], [1.0]))
    assert breaches("accuracy", 0.7, 0.8) and not breaches("accuracy", 0.9, 0.8)
    assert breaches("mae", 2.0, 1.0) and not breaches("mae", 0.5, 1.0)
    assert not breaches("accuracy", float("nan"), 0.8)


def write_site(
    store: ObjectStore, rng: np.random.Generator, site: str, hit_rate: Callable[[int], float]
) -> None:
    """Two hours of captures (version 1) and, a day later, labels for 90% of them."""
    for hour in range(2):
        n = 200
        start = T0 + timedelta(hours=hour)
        ids = [f"{site}-{hour}-{i}" for i in range(n)]
        truth = rng.choice(["0", "1"], size=n)
        right = rng.random(n) < hit_rate(hour)
        predicted = np.where(right, truth, np.where(truth == "1", "0", "1"))
        captures = pa.table(
            {
                "request_id": ids,
                "time": pa.array(
                    [start + timedelta(seconds=i * 10) for i in range(n)],
                    pa.timestamp("us", tz="UTC"),
                ),
                "version": ["1"] * n,
                "inputs": pa.StructArray.from_arrays([pa.array(rng.normal(size=n))], ["x"]),
                "outputs": pa.array(predicted),
            }
        )
        put_parquet(store, f"captures/churn/{site}/{start:%Y/%m/%d}/h{hour}.parquet", captures)
        labelled = rng.random(n) < 0.9
        labels = pa.table(
            {"request_id": [i for i, keep in zip(ids, labelled, strict=True) if keep],
             "label": [t for t, keep in zip(truth, labelled, strict=True) if keep]}
        )  # fmt: skip
        day = T0 + timedelta(days=1)
        put_parquet(store, f"labels/churn/{site}/{day:%Y/%m/%d}/h{hour}.parquet", labels)


def test_quality_per_site_and_hour_with_one_event_per_breach(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    store = LocalStore(tmp_path / "core")
    write_site(store, rng, "edge-a", lambda _hour: 0.95)
    write_site(store, rng, "edge-b", lambda hour: 0.95 if hour == 0 else 0.55)  # degrades
    config = parse_config(
        "project: p\nsites: [{name: core, tier: core, store: s}]\n"
        "monitoring:\n  models:\n    churn:\n      quality: {metric: accuracy, bound: 0.8}\n"
    ).monitoring
    journal = SQLiteJournal(tmp_path / "journal.db")
    job = QualityJob(store, config, JournalSink(journal))
    end = T0 + timedelta(days=2)
    report = job.run("churn", since="3d", end=end)
    points = {(p.site, p.bucket_start.hour): p for p in report.points}
    assert set(points) == {("edge-a", 10), ("edge-a", 11), ("edge-b", 10), ("edge-b", 11)}
    assert all(150 <= p.labels <= 200 for p in points.values())
    assert points[("edge-a", 11)].value > 0.9 and not points[("edge-a", 11)].breached
    assert points[("edge-b", 11)].value < 0.7 and points[("edge-b", 11)].breached
    assert [e.site for e in report.events] == ["edge-b"]

    job.run("churn", since="3d", end=end)  # a re-run raises nothing new
    events = journal.read(types=[QUALITY_DEGRADED])
    assert len(events) == 1
    assert events[0].event.data["metric"] == "accuracy"
    assert events[0].event.data["value"] < 0.8
    journal.close()


def test_no_labels_means_no_points_and_no_bound_means_no_events(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    store = LocalStore(tmp_path / "core")
    write_site(store, rng, "edge-a", lambda _hour: 0.1)
    report = QualityJob(store, MonitoringConfig()).run(
        "churn", since="3d", end=T0 + timedelta(days=2)
    )
    assert report.points and report.events == []  # MonitoringConfig() sets no bound
    assert QualityJob(store, MonitoringConfig()).run("other", since="3d").points == []

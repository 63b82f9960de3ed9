"""Live quality: join captured predictions with labels that arrived later (by request id) and
score them per site, version and time bucket: accuracy, macro F1 or MAE.

A bucket whose score crosses the model's bound (below it; above it for MAE) emits
`quality.degraded` with id `quality:<model>:<site>:<version>:<bucket-start>`, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edgeloop.journal.base import EventSink
from edgeloop.model.events import Event, utcnow
from edgeloop.monitor.captures import discover_sites, read_labels, read_window
from edgeloop.monitor.window import as_utc, floor_time, parse_duration
from edgeloop.store import ObjectStore
from edgeloop.workspace.config import MonitoringConfig, QualityBound

QUALITY_DEGRADED = "quality.degraded"
Metric = Literal["accuracy", "f1", "mae"]


def accuracy(truth: Sequence[Any], predicted: Sequence[Any]) -> float:
    """Share of predictions equal to the label (compared as text, so 1 matches "1")."""
    t, p = _as_text(truth), _as_text(predicted)
    return float(np.mean(t == p)) if t.size else float("nan")


def macro_f1(truth: Sequence[Any], predicted: Sequence[Any]) -> float:
    """F1 averaged over the classes that occur in the labels or the predictions."""
    t, p = _as_text(truth), _as_text(predicted)
    if t.size == 0:
        return float("nan")
    scores = []
    for label in np.union1d(t, p):
        tp = np.sum((p == label) & (t == label))
        fp = np.sum((p == label) & (t != label))
        fn = np.sum((p != label) & (t == label))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(scores))


def mean_absolute_error(truth: Sequence[Any], predicted: Sequence[Any]) -> float:
    """Mean |label - prediction| over pairs where both are numbers."""
    t = np.asarray(pa.array(truth).cast(pa.float64()).to_numpy(zero_copy_only=False), float)
    p = np.asarray(pa.array(predicted).cast(pa.float64()).to_numpy(zero_copy_only=False), float)
    both = np.isfinite(t) & np.isfinite(p)
    return float(np.mean(np.abs(t[both] - p[both]))) if both.any() else float("nan")


def _as_text(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    return np.asarray([str(v) for v in values], dtype=object)


METRICS = {"accuracy": accuracy, "f1": macro_f1, "mae": mean_absolute_error}


def breaches(metric: Metric, value: float, bound: float | None) -> bool:
    """Whether `value` is worse than `bound` (lower is worse, except for MAE)."""
    if bound is None or not np.isfinite(value):
        return False
    return value > bound if metric == "mae" else value < bound


@dataclass(frozen=True)
class QualityPoint:
    """One site's score for one version over one time bucket."""

    site: str
    version: str
    bucket_start: datetime
    labels: int
    value: float
    breached: bool


@dataclass(frozen=True)
class QualityReport:
    """Scores of one model over a span, and the events its breaches raised."""

    model: str
    metric: Metric
    bound: float | None
    points: list[QualityPoint] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metric": self.metric,
            "bound": self.bound,
            "points": [
                {**asdict(p), "bucket_start": p.bucket_start.isoformat()} for p in self.points
            ],
            "events": [e.id for e in self.events],
        }


def score_buckets(
    site: str, joined: pa.Table, metric: Metric, bucket: timedelta, bound: QualityBound
) -> list[QualityPoint]:
    """Score a table of (time, version, prediction, label) rows per version and time bucket;
    buckets with fewer than `bound.min_labels` labels are left out as too noisy."""
    if joined.num_rows == 0:
        return []
    times = joined.column("time").to_pylist()
    versions = [str(v) for v in joined.column("version").to_pylist()]
    starts = [floor_time(t, bucket) for t in times]
    groups: dict[tuple[str, datetime], list[int]] = {}
    for i, key in enumerate(zip(versions, starts, strict=True)):
        groups.setdefault(key, []).append(i)
    predictions = joined.column("prediction").to_pylist()
    labels = joined.column("label").to_pylist()
    score = METRICS[metric]
    points = []
    for (version, start), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if len(rows) < bound.min_labels:
            continue
        value = score([labels[i] for i in rows], [predictions[i] for i in rows])
        points.append(
            QualityPoint(
                site, version, start, len(rows), value, breaches(metric, value, bound.bound)
            )
        )
    return points


def quality_event(model: str, metric: Metric, bound: float, point: QualityPoint) -> Event:
    """The `quality.degraded` event of one breached bucket."""
    stamp = f"{point.bucket_start:%Y%m%dT%H%M%SZ}"
    return Event(
        id=f"quality:{model}:{point.site}:{point.version}:{stamp}",
        type=QUALITY_DEGRADED,
        site=point.site,
        subject=f"{model}@{point.version}",
        data={
            "model": model,
            "version": point.version,
            "site": point.site,
            "metric": metric,
            "value": point.value,
            "bound": bound,
            "labels": point.labels,
            "bucket_start": point.bucket_start.isoformat(),
        },
        time=point.bucket_start,
    )


def join_labels(
    captures: pa.Table, predictions: pa.ChunkedArray | None, labels: pa.Table
) -> pa.Table:
    """Rows of (time, version, prediction, label) for captures that have a label."""
    empty = pa.table({"time": [], "version": [], "prediction": [], "label": []})
    if predictions is None or "request_id" not in captures.column_names or labels.num_rows == 0:
        return empty
    versions = (
        captures.column("version")
        if "version" in captures.column_names
        else pa.chunked_array([pa.nulls(captures.num_rows, pa.string())])
    )
    left = pa.table(
        {
            "request_id": pc.cast(captures.column("request_id"), pa.string()),
            "time": captures.column("time"),
            "version": versions,
            "prediction": predictions,
        }
    )
    right = pa.table(
        {
            "request_id": pc.cast(labels.column("request_id"), pa.string()),
            "label": labels.column("label"),
        }
    )
    return left.join(right, keys="request_id", join_type="inner").sort_by("time")


@dataclass
class QualityJob:
    """Scores live quality of a model from the captures and labels in the core store."""

    store: ObjectStore
    config: MonitoringConfig
    sink: EventSink | None = None

    def run(
        self,
        model: str,
        *,
        sites: list[str] | None = None,
        since: str = "24h",
        end: datetime | None = None,
        emit: bool = True,
    ) -> QualityReport:
        """Score each site's buckets over [end - since, end); emit an event per breach."""
        bound = self.config.for_model(model).quality
        stop = as_utc(end) if end is not None else utcnow()
        start = stop - parse_duration(since)
        bucket = parse_duration(bound.bucket)
        points: list[QualityPoint] = []
        for site in sites if sites is not None else discover_sites(self.store, model):
            window = read_window(self.store, model, site, start, stop)
            # Labels arrive after their captures: read their partitions up to today.
            labels = read_labels(self.store, model, site, start, max(stop, utcnow()))
            joined = join_labels(window.records, window.predictions, labels)
            points += score_buckets(site, joined, bound.metric, bucket, bound)
        events = [
            quality_event(model, bound.metric, bound.bound, p)
            for p in points
            if p.breached and bound.bound is not None
        ]
        if emit and self.sink is not None:
            for event in events:
                self.sink.emit(event)
        return QualityReport(model, bound.metric, bound.bound, points, events)

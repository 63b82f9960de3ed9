"""Tabular data for retraining: read capture and label batches, join them, check and cap rows.

Pure functions over pyarrow tables and numpy arrays; the steps do the store I/O.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TIME = pa.timestamp("us", tz="UTC")
SNAPSHOT_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("site", pa.string()),
        ("features", pa.list_(pa.float64())),
        ("label", pa.string()),
        ("time", TIME),  # capture time (of a label waiting for its capture: the label's)
        ("waiting_for", pa.string()),  # null: a training row; "label" or "capture": pending
    ]
)
WAITING_FOR_LABEL = "label"
WAITING_FOR_CAPTURE = "capture"


def features_of(inputs_json: str) -> list[float] | None:
    """One request's feature row from a capture's `inputs` JSON: a tensor dict, a list of
    numbers, or the OIP tensors edgeloop's serving captures (the first tensor, first row)."""
    try:
        value: Any = orjson.loads(inputs_json)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = value[0]  # OIP tensors: [{"name", "shape", "datatype", "data"}, ...]
        if isinstance(value, dict) and "data" not in value:
            value = next(iter(value.values()))
        if isinstance(value, dict):  # an OIP tensor: {"data": [...], "shape": [rows, n]}
            shape = value.get("shape")
            value = np.asarray(value.get("data"), dtype=np.float64).reshape(-1)
            if isinstance(shape, list) and len(shape) >= 2:
                value = value[: int(np.prod(shape[1:]))]  # a batch: its first row
        row = np.asarray(value, dtype=np.float64).reshape(-1)
    except (orjson.JSONDecodeError, StopIteration, TypeError, ValueError):
        return None
    return [float(v) for v in row]


@dataclass(frozen=True)
class Merged:
    """A new snapshot and what went into it: the request ids this run's batches completed or
    changed, and the pending rows dropped for age (by what they waited for)."""

    snapshot: pa.Table
    new_ids: list[str]
    expired: dict[str, int]

    @property
    def pending(self) -> dict[str, int]:
        """Pending rows carried in the snapshot, by what they wait for."""
        waiting = self.snapshot["waiting_for"].to_pylist()
        return dict(Counter(w for w in waiting if w is not None))


def _times(table: pa.Table) -> list[datetime | None]:
    """A batch's `time` column as UTC datetimes (None where it is missing or unreadable)."""
    if "time" not in table.column_names:
        return [None] * table.num_rows
    column = table.column("time")
    try:
        if pa.types.is_timestamp(column.type) and column.type.tz is None:
            column = pc.assume_timezone(column, "UTC")
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            column = pc.cast(pc.multiply(column, 1_000_000), pa.int64()).cast(TIME)
        column = pc.cast(column, TIME)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return [None] * table.num_rows
    return list(column.to_pylist())


def _strings(table: pa.Table, name: str) -> list[Any]:
    if name not in table.column_names:
        return [None] * table.num_rows
    return [None if v is None else str(v) for v in table.column(name).to_pylist()]


def conform(table: pa.Table) -> pa.Table:
    """A snapshot in the current schema: older snapshots lack `time` and `waiting_for` (every
    row of theirs is a training row)."""
    columns = {}
    for field in SNAPSHOT_SCHEMA:
        if field.name in table.column_names:
            columns[field.name] = table.column(field.name).cast(field.type)
        else:
            columns[field.name] = pa.nulls(table.num_rows, field.type)
    return pa.table(columns, schema=SNAPSHOT_SCHEMA)


def training_rows(snapshot: pa.Table) -> pa.Table:
    """The rows of a snapshot that have both features and a label."""
    snapshot = conform(snapshot)
    return snapshot.filter(pc.is_null(snapshot["waiting_for"]))


def merge(
    previous: pa.Table | None,
    captures: list[pa.Table],
    labels: list[pa.Table],
    *,
    now: datetime,
    max_age: timedelta,
) -> Merged:
    """Join new capture and label batches by request id with the previous snapshot.

    A capture without its label (or a label without its capture) stays in the snapshot as a
    pending row until its partner arrives in a later run, or until it is older than
    `max_age` (then it is dropped and counted). The latest label of a request wins, also
    over the label of a training row of an earlier snapshot.
    """
    # request id -> (site, features, time) and -> (label, site, time)
    captured: dict[str, tuple[Any, Any, Any]] = {}
    labelled: dict[str, tuple[Any, Any, Any]] = {}
    if previous is not None and previous.num_rows:
        old = conform(previous)
        for rid, site, feats, label, at, waiting in zip(
            *(old[name].to_pylist() for name in SNAPSHOT_SCHEMA.names), strict=True
        ):
            if waiting != WAITING_FOR_CAPTURE:
                captured[rid] = (site, feats, at)
            if waiting != WAITING_FOR_LABEL:
                labelled[rid] = (label, site, at)
    touched: dict[str, None] = {}  # ordered set
    for table in captures:
        for rid, site, inputs, at in zip(
            _strings(table, "request_id"),
            _strings(table, "site"),
            table["inputs"].to_pylist(),
            _times(table),
            strict=True,
        ):
            if rid is not None:
                captured[rid] = (site, features_of(inputs), at)
                touched[rid] = None
    for table in labels:
        for rid, label, site, at in zip(
            _strings(table, "request_id"),
            _strings(table, "label"),
            _strings(table, "site"),
            _times(table),
            strict=True,
        ):
            if rid is not None:
                labelled[rid] = (label, site, at)
                touched[rid] = None
    rows: list[dict[str, Any]] = []
    expired: Counter[str] = Counter()
    # Untouched rows keep their place; what this run's batches touched goes last (newest).
    for rid in [*(r for r in {**captured, **labelled} if r not in touched), *touched]:
        capture, label = captured.get(rid), labelled.get(rid)
        if capture is not None and label is not None:
            site, feats, at = capture
            rows.append(_row(rid, site or label[1], feats, label[0], at, None))
            continue
        waiting = WAITING_FOR_LABEL if capture is not None else WAITING_FOR_CAPTURE
        if capture is not None:
            site, feats, at = capture
            row = _row(rid, site, feats, None, at or now, waiting)
        else:
            assert label is not None
            row = _row(rid, label[1], None, label[0], label[2] or now, waiting)
        if now - row["time"] > max_age:
            expired[waiting] += 1
        else:
            rows.append(row)
    snapshot = pa.Table.from_pylist(rows, schema=SNAPSHOT_SCHEMA)
    complete = {r["request_id"] for r in rows if r["waiting_for"] is None}
    return Merged(snapshot, [r for r in touched if r in complete], dict(expired))


def _row(
    rid: str, site: Any, feats: Any, label: Any, at: Any, waiting: str | None
) -> dict[str, Any]:
    return {
        "request_id": rid,
        "site": site,
        "features": feats,
        "label": label,
        "time": at,
        "waiting_for": waiting,
    }


def to_parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def from_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def quarantine(
    table: pa.Table, n_features: int, labels: list[str] | None
) -> tuple[pa.Table, dict[str, int]]:
    """Rows that pass schema and value checks, and counts of each reason a row was refused."""
    keep, reasons = [], Counter[str]()
    for feats, label in zip(table["features"].to_pylist(), table["label"].to_pylist(), strict=True):
        if feats is None or len(feats) != n_features:
            reasons["schema"] += 1
            keep.append(False)
        elif not np.all(np.isfinite(np.asarray(feats, dtype=np.float64))):
            reasons["nan_or_inf"] += 1
            keep.append(False)
        elif labels is not None and label not in labels:
            reasons["unknown_label"] += 1
            keep.append(False)
        else:
            keep.append(True)
    return table.filter(pa.array(keep, type=pa.bool_())), dict(reasons)


def label_counts(table: pa.Table) -> dict[str, int]:
    """Rows per label, most common first."""
    return dict(Counter(str(v) for v in table["label"].to_pylist()).most_common())


def label_problem(counts: dict[str, int], max_share: float | None) -> str | None:
    """Why these label counts cannot train a classifier (fewer than two labels, or one above
    `max_share` of the rows), or None; `max_share` None turns the check off."""
    if max_share is None:
        return None
    if len(counts) < 2:
        return "a classifier needs at least two labels"
    top, n = max(counts.items(), key=lambda item: item[1])
    total = sum(counts.values())
    if n / total > float(max_share):
        return f"label {top!r} is {n / total:.1%} of the rows (max_label_share {max_share})"
    return None


def stable_fraction(request_id: str) -> float:
    """A number in [0, 1) fixed by the request id (for holdouts and deterministic sampling)."""
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64


def cap_site_share(table: pa.Table, max_share: float) -> tuple[pa.Table, dict[str, int]]:
    """Drop rows of any site above `max_share` of the data (deterministically by request id),
    so one site's flood of labels cannot dominate training; returns rows dropped per site."""
    sites = table["site"].to_pylist()
    counts = Counter(sites)
    if len(counts) < 2 or max_share >= 1:
        return table, {}
    dropped: dict[str, int] = {}
    allowed = dict(counts)
    for site, count in counts.most_common():
        others = sum(v for s, v in allowed.items() if s != site)
        cap = int(max_share * others / (1 - max_share))
        if count > cap:
            allowed[site] = max(cap, 1)
            dropped[site] = count - allowed[site]
    if not dropped:
        return table, {}
    rids = table["request_id"].to_pylist()
    order = sorted(range(len(rids)), key=lambda i: stable_fraction(rids[i]))
    taken: Counter[str] = Counter()
    keep = [False] * len(rids)
    for i in order:
        if taken[sites[i]] < allowed[sites[i]]:
            taken[sites[i]] += 1
            keep[i] = True
    return table.filter(pa.array(keep)), dropped

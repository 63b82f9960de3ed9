"""Tabular data for retraining: read capture and label batches, join them, check and cap rows.

Pure functions over pyarrow tables and numpy arrays; the steps do the store I/O.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

SNAPSHOT_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("site", pa.string()),
        ("features", pa.list_(pa.float64())),
        ("label", pa.string()),
    ]
)


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


def join(captures: list[pa.Table], labels: list[pa.Table]) -> pa.Table:
    """Capture rows with a label for the same request id, as snapshot rows (last label wins)."""
    label_of: dict[str, str] = {}
    for table in labels:
        for rid, label in zip(
            table["request_id"].to_pylist(), table["label"].to_pylist(), strict=True
        ):
            label_of[rid] = label
    rows: dict[str, dict[str, Any]] = {}
    for table in captures:
        for rid, site, inputs in zip(
            table["request_id"].to_pylist(),
            table["site"].to_pylist(),
            table["inputs"].to_pylist(),
            strict=True,
        ):
            if rid in label_of:
                rows[rid] = {
                    "request_id": rid,
                    "site": site,
                    "features": features_of(inputs),
                    "label": label_of[rid],
                }
    return pa.Table.from_pylist(list(rows.values()), schema=SNAPSHOT_SCHEMA)


def union(previous: pa.Table | None, new: pa.Table) -> pa.Table:
    """The previous snapshot plus new rows; a request id seen before keeps its newest row."""
    if previous is None or previous.num_rows == 0:
        return new
    seen = set(new["request_id"].to_pylist())
    keep = [rid not in seen for rid in previous["request_id"].to_pylist()]
    return pa.concat_tables([previous.filter(pa.array(keep)), new])


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

"""Seeded synthetic data for drift tests, docs and benchmarks: reference features, windows
with and without drift, and capture batches written as Parquet the way edge sites do."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgeloop.store import ObjectStore

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def features(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> dict[str, Any]:
    """Three features: `amount` (numeric, moves by `shift` sd), `age` (numeric, stable) and
    `channel` (categorical, its mix moves when `shift` > 0)."""
    mix = [0.5, 0.3, 0.2] if shift == 0 else [0.25, 0.25, 0.5]
    return {
        "amount": rng.normal(10.0 + shift * 2.0, 2.0, size=n),
        "age": rng.integers(18, 80, size=n).astype(np.int64),
        "channel": rng.choice(["web", "store", "phone"], size=n, p=mix),
    }


def predictions_for(columns: dict[str, Any]) -> np.ndarray:
    """A stand-in model: class "1" when the amount is high."""
    return np.where(np.asarray(columns["amount"]) > 11.0, "1", "0")


def capture_table(
    rng: np.random.Generator,
    site: str,
    n: int,
    *,
    shift: float = 0.0,
    start: datetime = T0,
    span: timedelta = timedelta(hours=1),
    version: str = "1",
    inputs: str = "struct",
    batch: str = "b0",
) -> pa.Table:
    """One capture batch: `inputs` as a struct column, JSON objects, or OIP tensors."""
    cols = features(rng, n, shift=shift)
    offsets = rng.uniform(0, span.total_seconds(), size=n)
    times = [start + timedelta(seconds=float(s)) for s in offsets]
    if inputs == "struct":
        arr = pa.StructArray.from_arrays([pa.array(cols[k]) for k in cols], list(cols))
    elif inputs == "json":
        arr = pa.array(
            [
                f'{{"amount": {a}, "age": {int(g)}, "channel": "{c}"}}'
                for a, g, c in zip(cols["amount"], cols["age"], cols["channel"], strict=True)
            ]
        )
    else:
        raise ValueError(inputs)
    return pa.table(
        {
            "request_id": [f"{site}-{batch}-{i}" for i in range(n)],
            "time": pa.array(times, pa.timestamp("us", tz="UTC")),
            "site": [site] * n,
            "model": ["churn"] * n,
            "version": [version] * n,
            "inputs": arr,
            "outputs": pa.array(predictions_for(cols)),
        }
    )


def put_parquet(store: ObjectStore, key: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store.put(key, buf.getvalue())

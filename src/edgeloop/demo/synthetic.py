"""Synthetic edge data for demos: time-partitioned Parquet batches of sensor readings."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgeloop.store.base import ObjectInfo, ObjectStore


def batch_key(model: str, site: str, when: datetime, batch_id: str, kind: str = "captures") -> str:
    """The store key of one batch, time-partitioned as in docs/architecture.md."""
    return f"{kind}/{model}/{site}/{when:%Y/%m/%d}/{batch_id}.parquet"


def sensor_batch(site: str, rows: int, rng: np.random.Generator, start: datetime) -> bytes:
    """One Parquet batch of `rows` readings (request id, time, site, 4 features, a label)."""
    features = rng.normal(size=(rows, 4)).astype("float32")
    times = [start + timedelta(milliseconds=50 * i) for i in range(rows)]
    table = pa.table(
        {
            "request_id": [
                uuid.UUID(int=int(rng.integers(0, 2**63)) << 64).hex for _ in range(rows)
            ],
            "time": pa.array(times, type=pa.timestamp("us", tz="UTC")),
            "site": [site] * rows,
            **{f"f{i}": features[:, i] for i in range(4)},
            "label": (features.sum(axis=1) > 0).astype("int8"),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def write_batches(
    store: ObjectStore, site: str, *, batches: int, rows: int, seed: int, model: str = "demo"
) -> list[ObjectInfo]:
    """Write `batches` synthetic capture batches for `site` into `store`."""
    rng = np.random.default_rng(seed)
    start = datetime.now(UTC).replace(microsecond=0)
    written = []
    for n in range(batches):
        when = start + timedelta(seconds=n)
        batch_id = f"{when:%H%M%S}-{site}-{n:05d}"
        written.append(
            store.put(batch_key(model, site, when, batch_id), sensor_batch(site, rows, rng, when))
        )
    return written

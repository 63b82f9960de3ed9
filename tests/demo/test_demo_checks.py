"""The demo's capture check: request ids counted per site, duplicates seen, history left out."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from edgeloop.demo.checks import check_captures, request_ids_at
from edgeloop.demo.scenario import MODEL
from edgeloop.store import LocalStore


def batch(ids: list[str]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"request_id": ids}), buf)
    return buf.getvalue()


def test_request_ids_are_counted_and_the_history_is_left_out(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put(f"captures/{MODEL}/edge-a/2026/11/25/b1.parquet", batch(["a", "b"]))
    store.put(f"captures/{MODEL}/edge-a/2026/11/25/b2.parquet", batch(["a"]))
    store.put(f"captures/{MODEL}/edge-a/2026/11/23/history.parquet", batch(["h"]))
    store.put(f"captures/{MODEL}/edge-b/2026/11/25/b1.parquet", batch(["z"]))
    assert request_ids_at(store, "edge-a") == Counter({"a": 2, "b": 1})


def test_missing_and_duplicated_records_fail_the_check(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put(f"captures/{MODEL}/edge-a/2026/11/25/b1.parquet", batch(["a", "b", "b"]))
    check = check_captures(store, "edge-a", ["a", "b", "c"])
    assert (check.answered, check.at_core, check.missing, check.duplicates) == (3, 3, 1, 1)
    assert not check.ok
    assert check_captures(store, "edge-a", ["a"]).missing == 0

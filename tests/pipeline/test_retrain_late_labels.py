"""Labels that arrive in a later trigger window than their captures (and captures that arrive
after their labels) are not lost: `prepare` carries the unmatched half forward in the
snapshot as pending rows, and a later run joins it by request id. Pending rows older than
`pending_max_age` are dropped and counted."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from edgeloop.model.events import Event, EventType
from edgeloop.pipeline.core import CorePipelines
from edgeloop.pipeline.retrain import data
from edgeloop.serving.capture import encode_batch
from edgeloop.workspace import Workspace

CONFIG = """
pipelines:
  retrain:
    ref: edgeloop.pipeline.retrain:RETRAIN
    params:
      config: {model: churn, n_features: 2, labels: ["0", "1"], min_rows: 20,
               max_site_share: 1.0, min_improvement: -1.0, max_site_regression: 1.0}
triggers:
  - name: batches
    pipeline: retrain
    event: object.replicated
    min_records: 3
"""

Rows = list[tuple[str, list[float], str]]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    command = [sys.executable, "-c", "from edgeloop.cli.main import run; run()", "init"]
    subprocess.run([*command, str(tmp_path / "ws")], check=True, capture_output=True)
    config = tmp_path / "ws" / "edgeloop.yaml"
    config.write_text(config.read_text() + CONFIG)
    return Workspace.load(tmp_path / "ws")


def rows(site: str, batch: str, n: int, seed: int) -> Rows:
    x = np.random.default_rng(seed).normal(size=(n, 2))
    return [
        (f"{site}-{batch}-{i}", [float(a), float(b)], "1" if a + b > 0 else "0")
        for i, (a, b) in enumerate(x)
    ]


def land(ws: Workspace, root: str, site: str, batch: str, batch_rows: Rows, at: float) -> None:
    """Put one capture or label batch (serving's layout) at the core and journal its
    replication, as an edge's replicator does."""
    if root == "captures":
        records: list[dict[str, Any]] = [
            {"time": at, "request_id": rid, "model": "churn", "version": "1",
             "inputs": {"input": [x]}, "outputs": {}, "latency_ms": 1.0}
            for rid, x, _ in batch_rows
        ]  # fmt: skip
    else:
        records = [
            {"time": at, "request_id": rid, "model": "churn", "label": y}
            for rid, _, y in batch_rows
        ]
    day = datetime.fromtimestamp(at, UTC)
    key = f"{root}/churn/{site}/{day:%Y/%m/%d}/{batch}.parquet"
    store, journal = ws.store("core"), ws.journal("core")
    info = store.put(key, encode_batch(root, records, site, batch))
    journal.append(
        Event(
            type=EventType.OBJECT_REPLICATED,
            site="core",
            subject=key,
            data={"key": key, "size": info.size, "sha256": info.sha256, "source_site": site},
        )
    )
    journal.close()


def one_pass(ws: Workspace) -> dict[str, Any]:
    """One core pass that must start exactly one run; its result, with its run id."""
    core = CorePipelines.open(ws)
    try:
        before = {r.run_id for r in core.runs.list_runs()}
        worker = core.worker()
        worker.poll()
        worker.start_pending()
        new = [r for r in core.runs.list_runs() if r.run_id not in before]
    finally:
        core.close()
    assert len(new) == 1, new
    assert new[0].state == "succeeded", new[0].error
    result: dict[str, Any] = (new[0].outputs or {})["result"]
    return {**result, "run_id": new[0].run_id}


def snapshot_of(ws: Workspace, result: dict[str, Any]) -> Any:
    """The dataset snapshot the run wrote (its training rows and its pending rows)."""
    with ws.store("core").get(f"datasets/churn/{result['run_id']}.parquet") as reader:
        return pq.read_table(io.BytesIO(reader.read()))


def training_ids(ws: Workspace, result: dict[str, Any]) -> set[str]:
    return set(data.training_rows(snapshot_of(ws, result))["request_id"].to_pylist())


def test_a_label_batch_one_window_after_its_captures_is_joined(ws: Workspace) -> None:
    now = time.time()
    a, b, c = rows("edge-a", "a", 40, 1), rows("edge-b", "b", 40, 2), rows("edge-a", "c", 40, 3)
    # Window 1: edge-a's captures and labels, and edge-b's captures whose labels come later.
    land(ws, "captures", "edge-a", "a", a, now)
    land(ws, "labels", "edge-a", "a", a, now)
    land(ws, "captures", "edge-b", "b", b, now)
    first = one_pass(ws)
    assert training_ids(ws, first) == {rid for rid, _, _ in a}
    assert first["pending"] == {"label": 40}
    snapshot = snapshot_of(ws, first).to_pylist()
    pending = {r["request_id"]: r for r in snapshot if r["waiting_for"] is not None}
    assert set(pending) == {rid for rid, _, _ in b}
    assert {r["waiting_for"] for r in pending.values()} == {"label"}
    assert pending[b[0][0]]["features"] == b[0][1]  # kept with its features, for later

    # Window 2: edge-b's labels, one window late, plus a new edge-a batch.
    land(ws, "labels", "edge-b", "b", b, now + 5)
    land(ws, "captures", "edge-a", "c", c, now + 5)
    land(ws, "labels", "edge-a", "c", c, now + 5)
    second = one_pass(ws)
    joined = training_ids(ws, second)
    assert joined == {rid for rid, _, _ in a + b + c}
    assert second["pending"] == {} and second["expired"] == {}
    table = data.training_rows(snapshot_of(ws, second))
    by_id = dict(zip(table["request_id"].to_pylist(), table["label"].to_pylist(), strict=True))
    assert all(by_id[rid] == y for rid, _, y in b)  # each late label found its capture
    sites = dict(zip(table["request_id"].to_pylist(), table["site"].to_pylist(), strict=True))
    assert {sites[rid] for rid, _, _ in b} == {"edge-b"}


def test_a_capture_batch_after_its_labels_is_joined(ws: Workspace) -> None:
    now = time.time()
    a, b = rows("edge-a", "a", 40, 1), rows("edge-b", "b", 40, 2)
    land(ws, "captures", "edge-a", "a", a, now)
    land(ws, "labels", "edge-a", "a", a, now)
    land(ws, "labels", "edge-b", "b", b, now)  # feedback first (e.g. a slow capture upload)
    first = one_pass(ws)
    assert first["pending"] == {"capture": 40}
    land(ws, "captures", "edge-b", "b", b, now + 1)
    land(ws, "captures", "edge-a", "c", rows("edge-a", "c", 5, 3), now + 1)
    land(ws, "labels", "edge-a", "c", rows("edge-a", "c", 5, 3), now + 1)
    second = one_pass(ws)
    assert {rid for rid, _, _ in b} <= training_ids(ws, second)
    assert second["pending"] == {}


def test_pending_rows_older_than_the_limit_are_dropped_and_counted() -> None:
    now = datetime.now(UTC)
    captures = data.from_parquet(
        encode_batch(
            "captures",
            [
                {"time": (now - timedelta(days=age)).timestamp(), "request_id": f"r{age}",
                 "model": "m", "version": "1", "inputs": {"input": [[1.0, 2.0]]}, "outputs": {},
                 "latency_ms": 1.0}
                for age in (1, 10)
            ],
            "edge-a",
            "b",
        )
    )  # fmt: skip
    labels = data.from_parquet(
        encode_batch(
            "labels",
            [{"time": (now - timedelta(days=9)).timestamp(), "request_id": "x", "model": "m",
              "label": "1"}],
            "edge-a",
            "b",
        )
    )  # fmt: skip
    merged = data.merge(None, [captures], [labels], now=now, max_age=timedelta(days=7))
    assert merged.snapshot["request_id"].to_pylist() == ["r1"]
    assert merged.pending == {"label": 1}
    assert merged.expired == {"label": 1, "capture": 1}
    # A later label still finds the capture kept in the snapshot; the newest label wins.
    late = data.from_parquet(
        encode_batch(
            "labels",
            [{"time": now.timestamp(), "request_id": "r1", "model": "m", "label": y}
             for y in ("0", "1")],
            "edge-a",
            "c",
        )
    )  # fmt: skip
    again = data.merge(merged.snapshot, [], [late], now=now, max_age=timedelta(days=7))
    assert data.training_rows(again.snapshot).to_pylist() == [
        {"request_id": "r1", "site": "edge-a", "features": [1.0, 2.0], "label": "1",
         "time": again.snapshot["time"][0].as_py(), "waiting_for": None}
    ]  # fmt: skip
    assert again.new_ids == ["r1"] and again.pending == {}


def test_snapshots_written_before_pending_rows_existed_are_read() -> None:
    import pyarrow as pa

    old = pa.table(
        {"request_id": ["r1"], "site": ["edge-a"], "features": [[1.0, 2.0]], "label": ["0"]}
    )
    merged = data.merge(old, [], [], now=datetime.now(UTC), max_age=timedelta(days=7))
    assert data.training_rows(merged.snapshot)["request_id"].to_pylist() == ["r1"]
    assert merged.new_ids == [] and merged.expired == {}

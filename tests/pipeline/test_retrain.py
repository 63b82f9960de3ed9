"""The built-in retraining pipeline end to end on a real workspace: a replicated batch of
captures and labels triggers one run that registers a signed version with lineage; a poisoned
batch is quarantined and capped, and the gate refuses a worse model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeloop.model.events import Event, EventType
from edgeloop.pipeline.core import CorePipelines
from edgeloop.registry.workspace import open_registry
from edgeloop.serving.capture import encode_batch
from edgeloop.workspace import Workspace

TRIGGERS = """
pipelines:
  retrain:
    ref: edgeloop.pipeline.retrain:RETRAIN
    params:
      config: {model: churn, n_features: 2, labels: ["0", "1"], max_site_share: 0.6,
               min_rows: 20}
triggers:
  - name: churn-batches
    pipeline: retrain
    event: object.replicated
    prefix: ""
    min_records: 4
"""


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from edgeloop.cli.main import run; run()",
            "init",
            str(tmp_path / "ws"),
        ],
        check=True,
        capture_output=True,
    )
    config = tmp_path / "ws" / "edgeloop.yaml"
    config.write_text(config.read_text() + TRIGGERS)
    return Workspace.load(tmp_path / "ws")


def land(ws: Workspace, site: str, batch: str, rows: list[tuple[str, list[float], str]]) -> None:
    """Write one capture and one label batch in the core store and journal their replication."""
    store, journal = ws.store("core"), ws.journal("core")
    captures = [
        {
            "time": 1.7e9,
            "request_id": rid,
            "model": "churn",
            "version": "1",
            "inputs": {"input": [x]},
            "outputs": {},
            "latency_ms": 1.0,
        }
        for rid, x, _ in rows
    ]
    labels = [
        {"time": 1.7e9, "request_id": rid, "model": "churn", "label": y} for rid, _, y in rows
    ]
    for root, records in (("captures", captures), ("labels", labels)):
        key = f"{root}/churn/{site}/2026/01/01/{batch}.parquet"
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


def clean_rows(site: str, n: int, seed: int) -> list[tuple[str, list[float], str]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return [
        (f"{site}-{seed}-{i}", [float(a), float(b)], "1" if a + b > 0 else "0")
        for i, (a, b) in enumerate(x)
    ]


def run_core_pass(ws: Workspace) -> list[Any]:
    core = CorePipelines.open(ws)
    try:
        worker = core.worker()
        worker.poll()
        worker.start_pending()
        return core.runs.list_runs()
    finally:
        core.close()


def test_replicated_batch_registers_signed_version_with_lineage(ws: Workspace) -> None:
    land(ws, "edge-a", "b1", clean_rows("edge-a", 150, 1))
    land(ws, "edge-b", "b1", clean_rows("edge-b", 150, 2))
    runs = run_core_pass(ws)
    assert len(runs) == 1 and runs[0].state == "succeeded", runs[0].error
    result = runs[0].outputs["result"]
    assert result["registered"] is True and result["version"] == 1
    registry = open_registry(ws)
    try:
        info = registry.get("churn", 1)
        lineage = info.lineage
        assert {c.key for c in lineage.captures} == {
            "captures/churn/edge-a/2026/01/01/b1.parquet",
            "captures/churn/edge-b/2026/01/01/b1.parquet",
        }
        assert len(lineage.labels) == 2 and lineage.dataset.rows == 300
        assert lineage.run_id == runs[0].run_id and lineage.pipeline == "retrain-tabular"
        assert registry.aliases("churn") == {"candidate": 1}
        registry.promote("churn", 1, "champion")
    finally:
        registry.close()
    events = [e.event.type for e in ws.journal("core").read(0, types=["model.registered"])]
    assert events == ["model.registered"]

    # poisoned batch: NaN/Inf rows, a wrong-schema row, and a flood of flipped labels
    # from one site; the bad rows are quarantined, the flood capped, and the gate refuses
    poison = [(f"p-{i}", [float("nan"), 1.0], "1") for i in range(5)]
    poison += [(f"inf-{i}", [float("inf"), 0.0], "0") for i in range(3)]
    poison += [("short", [1.0], "1")]
    flood = [(rid, x, "0" if y == "1" else "1") for rid, x, y in clean_rows("edge-b", 900, 3)]
    land(ws, "edge-a", "b2", clean_rows("edge-a", 20, 4) + poison)
    land(ws, "edge-b", "b2", flood)
    runs = run_core_pass(ws)
    second = runs[0]
    assert second.state == "succeeded", second.error
    result = second.outputs["result"]
    assert result["registered"] is False
    assert any("regresses" in r or "accuracy" in r for r in result["refused"])
    assert result["quarantined"] == {"nan_or_inf": 8, "schema": 1}
    assert result["capped"]["edge-b"] > 0  # the flood was cut to the site share cap
    registry = open_registry(ws)
    try:
        assert [v.version for v in registry.versions("churn")] == [1]
    finally:
        registry.close()


def test_failing_step_registers_nothing(ws: Workspace) -> None:
    land(ws, "edge-a", "b1", clean_rows("edge-a", 5, 1))  # too few rows: validate raises
    land(ws, "edge-b", "b1", clean_rows("edge-b", 5, 2))
    runs = run_core_pass(ws)
    assert runs[0].state == "failed"
    assert "usable rows" in (runs[0].error or "")
    assert {s.step: s.state for s in runs[0].steps}["register"] == "skipped"
    registry = open_registry(ws)
    try:
        assert registry.models() == []
    finally:
        registry.close()


@pytest.mark.ray
def test_same_retraining_pipeline_on_local_ray(ws: Workspace, ray_executor: object) -> None:
    land(ws, "edge-a", "b1", clean_rows("edge-a", 150, 1))
    land(ws, "edge-b", "b1", clean_rows("edge-b", 150, 2))
    core = CorePipelines.open(ws, executor="ray:local")
    try:
        worker = core.worker()
        worker.poll()
        worker.start_pending()
        (run,) = core.runs.list_runs()
    finally:
        core.close()
    assert run.executor == "ray" and run.state == "succeeded", run.error
    assert run.outputs["result"]["registered"] is True
    assert [s.step for s in run.steps] == [
        "prepare",
        "validate",
        "train",
        "evaluate",
        "gate",
        "register",
    ]


def test_retraining_pipeline_compiles_for_kubeflow(tmp_path: Path) -> None:
    pytest.importorskip("kfp")
    from kfp import components

    from edgeloop.pipeline.compile.kubeflow import compile_kubeflow
    from edgeloop.pipeline.retrain import RETRAIN

    out = compile_kubeflow(RETRAIN, tmp_path / "retrain.yaml")
    component = components.load_component_from_file(str(out))
    assert component.name == "retrain-tabular"

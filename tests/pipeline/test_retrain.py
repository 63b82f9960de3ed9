"""The built-in retraining pipeline end to end on a real workspace: a replicated batch of
captures and labels triggers one run that registers a signed version with lineage; a poisoned
batch is quarantined and capped, and the gate refuses a worse model."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeloop
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
    return make_workspace(tmp_path, TRIGGERS)


def make_workspace(tmp_path: Path, extra_config: str) -> Workspace:
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
    config.write_text(config.read_text() + extra_config)
    return Workspace.load(tmp_path / "ws")


def land(
    ws: Workspace, site: str, batch: str, rows: list[tuple[str, list[float], str]]
) -> list[Event]:
    """Write one capture and one label batch in the core store and journal their replication;
    return the two `object.replicated` events."""
    store, journal = ws.store("core"), ws.journal("core")
    events = []
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
        event = Event(
            type=EventType.OBJECT_REPLICATED,
            site="core",
            subject=key,
            data={"key": key, "size": info.size, "sha256": info.sha256, "source_site": site},
        )
        journal.append(event)
        events.append(event)
    journal.close()
    return events


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


DONE_WHEN = """
pipelines:
  retrain:
    ref: edgeloop.pipeline.retrain:RETRAIN
    params:
      config: {model: churn, n_features: 2, labels: ["0", "1"], max_site_share: 0.6,
               min_rows: 20, fit: warm_start, min_improvement: -0.05, max_site_regression: 0.1}
triggers:
  - name: churn-batches
    pipeline: retrain
    event: object.replicated
    prefix: ""
    min_records: 4
"""


def test_done_when_a_replicated_batch_makes_one_signed_version_with_complete_lineage(
    tmp_path: Path,
) -> None:
    """Issue 4's "done when": a replicated batch of captures and labels, its events delivered
    several times and shuffled, triggers exactly one run; the run registers a signed version
    whose lineage names every capture and label object with its SHA-256, the snapshot, the
    parent, the run, the code version and the parameters. The next batch warm-starts from it."""
    import random

    from edgeloop.registry import verify_package
    from edgeloop.registry.workspace import trusted_public_key

    ws = make_workspace(tmp_path, DONE_WHEN)
    events = land(ws, "edge-a", "b1", clean_rows("edge-a", 150, 1))
    events += land(ws, "edge-b", "b1", clean_rows("edge-b", 150, 2))
    journal = ws.journal("core")
    # Redelivery: the same events again (same ids), and re-replications (new event ids, same
    # bytes), in shuffled order; between core passes, as they would arrive.
    again = [dataclasses.replace(e, id=f"{e.id}-again-{n}") for e in events for n in range(3)]
    random.Random(4).shuffle(again)
    for event in [*events, *again[:6]]:
        journal.append(event)
    assert len(run_core_pass(ws)) == 1
    for event in again[6:]:
        journal.append(event)
    journal.close()
    runs = run_core_pass(ws)
    assert len(runs) == 1, [r.window_id for r in runs]  # exactly one run for the window
    (run,) = runs
    assert run.state == "succeeded", run.error
    assert run.outputs["result"]["registered"] is True

    store = ws.store("core")
    registry = open_registry(ws)
    try:
        info = registry.get("churn", 1)
        lineage = info.lineage
        fetched = registry.fetch("churn", 1, tmp_path / "fetched")  # hashes, then signature
        registry.promote("churn", 1, "champion")
    finally:
        registry.close()
    assert verify_package(fetched.root, trusted_public_key(ws)).manifest.version == 1
    replicated = {e.data["key"]: e.data for e in events}
    assert {(c.key, c.sha256, c.site) for c in [*lineage.captures, *lineage.labels]} == {
        (k, d["sha256"], d["source_site"]) for k, d in replicated.items()
    }
    for ref in [*lineage.captures, *lineage.labels]:  # the digests are the stored bytes'
        assert hashlib.sha256(store.get(ref.key).read()).hexdigest() == ref.sha256
    assert lineage.dataset is not None and lineage.dataset.snapshot == run.run_id
    assert lineage.dataset.key is not None and lineage.dataset.rows == 300
    assert hashlib.sha256(store.get(lineage.dataset.key).read()).hexdigest() == (
        lineage.dataset.sha256
    )
    assert lineage.parent is None  # the first version refines nothing
    assert (lineage.pipeline, lineage.run_id) == ("retrain-tabular", run.run_id)
    assert lineage.code_version == f"edgeloop {edgeloop.__version__}"
    assert lineage.parameters["model"] == "churn" and lineage.parameters["fit"] == "warm_start"
    extra = lineage.model_extra or {}
    assert extra["fit"] == {
        "how": "refit", "from_version": None, "note": "no champion estimator to start from",
    }  # fmt: skip
    assert (
        hashlib.sha256(store.get(extra["estimator"]["key"]).read()).hexdigest()
        == (extra["estimator"]["sha256"])
    )
    assert fetched.manifest.lineage == lineage.to_json()  # the signed manifest carries it all

    # The next replicated batch: one more run, a version whose parent is the champion and
    # whose estimator was warm-started from the champion's.
    land(ws, "edge-a", "b2", clean_rows("edge-a", 100, 5))
    land(ws, "edge-b", "b2", clean_rows("edge-b", 100, 6))
    runs = run_core_pass(ws)
    assert len(runs) == 2 and runs[0].state == "succeeded", runs[0].error
    assert runs[0].outputs["result"]["version"] == 2, runs[0].outputs
    registry = open_registry(ws)
    try:
        second = registry.get("churn", 2).lineage
    finally:
        registry.close()
    assert second.parent == 1 and second.run_id == runs[0].run_id
    assert (second.model_extra or {})["fit"] == {"how": "warm_start", "from_version": 1,
                                                 "note": None}  # fmt: skip
    assert {c.key.split("/")[-1] for c in second.captures} == {"b2.parquet"}
    assert second.dataset is not None and second.dataset.rows == 500  # previous snapshot + new
    registered = ws.journal("core").read(0, types=["model.registered"])
    assert [e.event.id for e in registered] == [
        "model.registered/churn/1", "model.registered/churn/2",
    ]  # fmt: skip

    # Run artifacts cleaned away: a warm start from version 2 has nothing to begin from.
    registry = open_registry(ws)
    try:
        registry.promote("churn", 2, "champion")
    finally:
        registry.close()
    store.delete((second.model_extra or {})["estimator"]["key"])
    land(ws, "edge-a", "b3", clean_rows("edge-a", 60, 7))
    land(ws, "edge-b", "b3", clean_rows("edge-b", 60, 8))
    third = run_core_pass(ws)[0]
    assert third.state == "succeeded", third.error
    assert third.outputs["result"]["version"] == 3, third.outputs
    registry = open_registry(ws)
    try:
        fit = (registry.get("churn", 3).lineage.model_extra or {})["fit"]
    finally:
        registry.close()
    assert fit == {"how": "refit", "from_version": None,
                   "note": "no champion estimator to start from"}  # fmt: skip


@pytest.mark.slow  # seven `edgeloop pipeline step` processes, each importing scikit-learn: ~40 s
def test_retraining_pipeline_runs_compiled_for_kubeflow(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same retraining pipeline, compiled to KFP v2 YAML and run by kfp's local
    SubprocessRunner: each step a separate `edgeloop pipeline step` process."""
    pytest.importorskip("kfp")
    from kfp import components, local

    from edgeloop.pipeline.compile.kubeflow import compile_kubeflow
    from edgeloop.pipeline.retrain import RETRAIN

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    events = land(ws, "edge-a", "b1", clean_rows("edge-a", 150, 1))
    events += land(ws, "edge-b", "b1", clean_rows("edge-b", 150, 2))
    members = [
        {"key": e.data["key"], "sha256": e.data["sha256"], "site": e.data["source_site"]}
        for e in events
    ]
    config = ws.config.pipelines["retrain"].params["config"]
    store_url = ws.store("core").url
    out = compile_kubeflow(RETRAIN, tmp_path / "retrain.yaml", store_url=store_url)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp-root"),
        raise_on_error=True,
    )
    run_inputs = {"window": {"id": "kfp:1", "members": members}, "config": config,
                  "workspace": str(ws.root)}  # fmt: skip
    task = components.load_component_from_file(str(out))(run_inputs=json.dumps(run_inputs))
    result = json.loads(task.output)
    assert result["registered"] is True and result["version"] == 1
    registry = open_registry(ws)
    try:
        lineage = registry.get("churn", 1).lineage
    finally:
        registry.close()
    assert {c.key for c in lineage.captures} == {
        m["key"] for m in members if "captures/" in m["key"]
    }
    assert lineage.run_id and lineage.dataset is not None and lineage.dataset.rows == 300


def test_core_start_repairs_what_a_crash_left_in_the_registry(
    ws: Workspace, tmp_path: Path
) -> None:
    """`edgeloop core` at start sweeps a version left pending by a registering process that
    died, and sends the `model.registered` a crash kept from the journal."""
    import socket

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from edgeloop.registry import Registry, VersionState
    from edgeloop.registry.db import VersionRow
    from edgeloop.registry.workspace import signing_key_path, trusted_public_key
    from edgeloop.testing.serving import make_package

    db = ws.state_dir("core") / "registry.db"
    quiet = Registry(db, ws.store("core"), public_key=trusted_public_key(ws),
                     signing_key=signing_key_path(ws))  # fmt: skip  # no event sink: "crashed"
    package = make_package(tmp_path / "pkg", name="churn", version=1)
    quiet.register(package)
    quiet.register(package)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True, text=True)  # fmt: skip
    with Session(quiet.engine) as session, session.begin():  # version 2: its writer is gone
        session.execute(
            update(VersionRow)
            .where(VersionRow.version == 2)
            .values(state="pending", owner=f"{socket.gethostname()}:{dead.stdout.strip()}:1")
        )
    quiet.close()
    assert ws.journal("core").read(0, types=["model.registered"]) == []
    subprocess.run(
        [sys.executable, "-c", "from edgeloop.cli.main import run; run()", "core", "--once",
         "--no-monitor", "-w", str(ws.root)],
        check=True, capture_output=True,
    )  # fmt: skip
    registry = open_registry(ws)
    try:
        states = [(v.version, v.state) for v in registry.versions("churn", include_all=True)]
    finally:
        registry.close()
    assert states == [(1, VersionState.REGISTERED), (2, VersionState.FAILED)]
    announced = ws.journal("core").read(0, types=["model.registered"])
    assert [e.event.id for e in announced] == ["model.registered/churn/1"]


def test_a_step_that_keeps_raising_is_retried_then_fails_the_run_cleanly(
    tmp_path: Path,
) -> None:
    ws = make_workspace(
        tmp_path, TRIGGERS.replace("edgeloop.pipeline.retrain:RETRAIN",
                                   "steps_for_tests:retrain_with_broken_train"),
    )  # fmt: skip
    land(ws, "edge-a", "b1", clean_rows("edge-a", 150, 1))
    land(ws, "edge-b", "b1", clean_rows("edge-b", 150, 2))
    (run,) = run_core_pass(ws)
    steps = {s.step: s for s in run.steps}
    assert run.state == "failed" and "out of memory training on" in (run.error or "")
    assert steps["train"].state == "failed" and steps["train"].attempts == 3  # 1 + 2 retries
    assert "RuntimeError: out of memory" in (steps["train"].error or "")
    assert {steps[n].state for n in ("evaluate", "gate", "register")} == {"skipped"}
    registry = open_registry(ws)
    try:
        assert registry.models() == []
    finally:
        registry.close()
    failed = ws.journal("core").read(0, types=["run.failed", "model.registered"])
    assert [e.event.type for e in failed] == ["run.failed"]


def test_a_single_label_flood_is_refused_before_training(ws: Workspace) -> None:
    land(ws, "edge-a", "b1", [(f"a-{i}", [0.1 * i, 1.0], "1") for i in range(60)])
    land(ws, "edge-b", "b1", [(f"b-{i}", [1.0, 0.1 * i], "1") for i in range(60)])
    (run,) = run_core_pass(ws)
    assert run.state == "failed"
    assert "label distribution {'1': 120}: a classifier needs at least two labels" in (
        run.error or ""
    )


def test_label_problems() -> None:
    from edgeloop.pipeline.retrain.data import label_problem

    assert label_problem({"0": 50, "1": 50}, 0.98) is None
    assert label_problem({"0": 99, "1": 1}, None) is None
    assert label_problem({"0": 99}, None) is None  # off: e.g. for a model that ignores labels
    assert label_problem({"0": 99}, 1.0) == "a classifier needs at least two labels"
    assert "label '0' is 99.0% of the rows" in (label_problem({"1": 1, "0": 99}, 0.98) or "")


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
        "start_from",
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

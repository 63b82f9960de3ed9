"""Issue 6's done-when, on a real workspace: edges capture (in the serving capture format) and
label into their own stores, `edgeloop replicate` copies it all up, the retraining pipeline
registers version 1 and stores its reference profile, then a drift injected at edge-b is
found by the core's own monitoring schedule (a real `edgeloop core` process), reported with
plots, and turned into exactly one retraining run, however often the drift report runs and
the event is delivered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.journal import JournalSink
from edgeloop.model.events import EventType
from edgeloop.monitor import load_profile
from edgeloop.monitor.window import floor_time
from edgeloop.pipeline.core import CorePipelines
from edgeloop.pipeline.triggers import CONSUMER
from edgeloop.registry.workspace import open_registry
from edgeloop.serving.capture import encode_batch
from edgeloop.serving.oip import encode_tensor
from edgeloop.store.journaled import JournaledStore
from edgeloop.workspace import Workspace

runner = CliRunner()

LOOP_CONFIG = """
monitoring:
  window: 1h
  every: 1s
  grace: 0s
  catch_up: 3h
  min_rows: 50
pipelines:
  retrain:
    ref: edgeloop.pipeline.retrain:RETRAIN
    params:
      # The loop is under test here, not the gate: a candidate about as good as the
      # champion (trained on a mix of old and drifted data) may pass.
      config: {model: churn, n_features: 2, labels: ["0", "1"], min_rows: 50,
               min_improvement: -0.02, max_site_regression: 0.3}
triggers:
  - name: on-drift
    pipeline: retrain
    event: drift.detected
    model: churn
"""


@pytest.fixture
def ws(workspace_dir: Path) -> Workspace:
    config = workspace_dir / "edgeloop.yaml"
    config.write_text(config.read_text() + LOOP_CONFIG)
    return Workspace.load(workspace_dir)


def serve_and_label(
    ws: Workspace, site: str, batch: str, x: np.ndarray, truth: np.ndarray, start: datetime
) -> None:
    """As an edge does: captures of served requests (OIP tensors) and, later, their labels,
    written into the edge's own store, which journals each batch for replication."""
    seconds = np.linspace(0, 3600, len(x), endpoint=False)
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, (row, label) in enumerate(zip(x, truth, strict=True)):
        at = start + timedelta(seconds=float(seconds[i]))
        served = "1" if row[0] + row[1] > 0 else "0"  # what version 1 (roughly) answers
        by_day[f"{at:%Y/%m/%d}"].append({
            "time": at.timestamp(), "request_id": f"{site}-{batch}-{i}", "model": "churn",
            "version": "1", "label": label,
            "inputs": [encode_tensor("input", row.reshape(1, -1).astype(np.float32))],
            "outputs": [encode_tensor("label", np.array([served]))],
        })  # fmt: skip
    journal = ws.journal(site)
    edge = JournaledStore(ws.store(site), JournalSink(journal), site)
    for day, records in by_day.items():
        records = orjson.loads(orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY))
        for root in ("captures", "labels"):
            key = f"{root}/churn/{site}/{day}/{batch}.parquet"
            edge.put(key, encode_batch(root, records, site, batch))
    journal.close()


def replicate(ws: Workspace) -> None:
    result = runner.invoke(app, ["replicate", "--once", "--workspace", str(ws.root)])
    assert result.exit_code == 0, result.output


@contextmanager
def core_process_for(ws: Workspace) -> Iterator[subprocess.Popen[bytes]]:
    """A real `edgeloop core` process for `ws`, stopped with SIGTERM at the end."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", "from edgeloop.cli.main import run; run()"]
    process = subprocess.Popen(
        [*command, "core", "--workspace", str(ws.root), "--interval", "0.2", "--no-control"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_drift_run(ws: Workspace, process: subprocess.Popen[bytes]) -> None:
    """Wait until the core has started, and finished, a run for a drift event."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        core = CorePipelines.open(ws)
        try:
            runs = [r for r in core.runs.list_runs() if r.trigger == "drift.detected:on-drift"]
        finally:
            core.close()
        if runs and all(r.state in ("succeeded", "failed") for r in runs):
            return
        assert process.poll() is None, (process.stdout.read() if process.stdout else b"").decode()
        time.sleep(0.3)
    raise AssertionError("the core started no retraining run")


def test_drift_at_one_site_triggers_exactly_one_retraining_run(ws: Workspace) -> None:
    rng = np.random.default_rng(6)
    # Version 1: two days ago both edges saw x ~ N(0, 1) with label x0 + x1 > 0.
    window_end = floor_time(datetime.now(UTC), timedelta(hours=1))
    old = window_end - timedelta(days=2)
    for site in ("edge-a", "edge-b"):
        x = rng.normal(size=(300, 2))
        serve_and_label(ws, site, "old", x, np.where(x.sum(axis=1) > 0, "1", "0"), old)
    replicate(ws)
    core = CorePipelines.open(ws)
    try:
        members = [
            {"key": i.key, "sha256": i.sha256, "site": i.key.split("/")[2]}
            for root in ("captures/", "labels/")
            for i in core.store.list(root)
        ]
        first = core.run("retrain", params={"window": {"id": "bootstrap", "members": members}})
    finally:
        core.close()
    assert first.state == "succeeded", first.error
    assert first.outputs["result"]["profile"] == "monitoring/profiles/churn/1.json"
    registry = open_registry(ws)
    registry.promote("churn", 1, "champion")
    registry.close()
    profile = load_profile(ws.store("core"), "churn", "1")  # made at registration
    assert set(profile.features) == {"input[0]", "input[1]"} and profile.prediction is not None

    # The last complete hour: edge-a as before; edge-b drifted in its inputs and its labels.
    start = window_end - timedelta(hours=1)
    x = rng.normal(size=(400, 2))
    serve_and_label(ws, "edge-a", "now", x, np.where(x.sum(axis=1) > 0, "1", "0"), start)
    x = rng.normal(size=(400, 2)) + np.array([1.5, 0.0])
    serve_and_label(ws, "edge-b", "now", x, np.where(x[:, 0] > 1.5, "1", "0"), start)
    replicate(ws)

    # The core process: its schedule judges windows every second, its trigger worker runs.
    with core_process_for(ws) as process:
        wait_for_drift_run(ws, process)
        time.sleep(2.5)  # a few more monitoring passes over the same windows
        # The same window judged again by hand (as an operator might), twice.
        w = ["--workspace", str(ws.root)]
        for _ in range(2):
            by_hand = runner.invoke(
                app, ["drift", "report", "--model", "churn", "--end", window_end.isoformat(), *w]
            )
            assert by_hand.exit_code == 0, by_hand.output
            assert "edge-a: no_drift" in by_hand.output and "edge-b: drift" in by_hand.output
            assert "already journaled" in by_hand.output
        time.sleep(1)
    # Redelivery: the trigger worker loses its cursor and reads every event again.
    journal = ws.journal("core")
    journal.commit(CONSUMER, 0)
    journal.close()
    for _ in range(2):
        once = runner.invoke(app, ["core", "--once", *w])
        assert once.exit_code == 0, once.output

    journal = ws.journal("core")
    drift_events = journal.read(types=[EventType.DRIFT_DETECTED])
    journal.close()
    assert [e.event.site for e in drift_events] == ["edge-b"]
    event = drift_events[0].event
    assert event.data["version"] == "1" and "input[0]" in event.data["drifted"]
    with ws.store("core").get(event.data["html"]) as reader:
        page = reader.read().decode()
    assert page.count("<svg") == 3  # input[0], input[1] and the prediction

    core = CorePipelines.open(ws)
    try:
        runs = [r for r in core.runs.list_runs() if r.trigger == "drift.detected:on-drift"]
    finally:
        core.close()
    assert len(runs) == 1
    run = runs[0]
    assert run.state == "succeeded", run.error
    result = run.outputs["result"]
    drifted_batch = f"captures/churn/edge-b/{start:%Y/%m/%d}/now.parquet"
    registry = open_registry(ws)
    try:
        assert result["registered"] is True, result
        info = registry.get("churn", result["version"])
        assert drifted_batch in {c.key for c in info.lineage.captures}
        assert info.lineage.run_id == run.run_id
    finally:
        registry.close()
    # The new version brought its own reference for the next drift checks.
    assert load_profile(ws.store("core"), "churn", str(result["version"])).rows > 0

"""The user pipeline example of docs/pipelines.md, run as written: its Python block becomes
`my_pipelines.py`, its YAML goes into a workspace, and `edgeloop core --once` runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeloop.model.events import Event, EventType
from edgeloop.pipeline.runs import RunStore
from edgeloop.serving.capture import encode_batch
from edgeloop.workspace import Workspace

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"


def example_blocks() -> tuple[str, str]:
    """The first Python and YAML blocks of the doc's "your own pipeline" section."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Your own pipeline for another model type", 1)[1]
    python = re.search(r"```python\n(.*?)```", section, re.S)
    yaml = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert python and yaml, "the example's code blocks are missing from docs/pipelines.md"
    return python.group(1), yaml.group(1)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from edgeloop.cli.main import run; run()", *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip


def land(ws: Workspace, site: str, seed: int) -> None:
    """One capture and one label batch of model `sensors`, replicated to the core."""
    rng = np.random.default_rng(seed)
    rows = [(f"{site}-{i}", rng.normal(size=2).tolist()) for i in range(40)]
    records = {
        "captures": [{"time": 1.7e9, "request_id": rid, "model": "sensors", "version": "1",
                      "inputs": {"input": [x]}, "outputs": {}, "latency_ms": 1.0}
                     for rid, x in rows],
        "labels": [{"time": 1.7e9, "request_id": rid, "model": "sensors",
                    "label": "1" if x[0] > 0 else "0"} for rid, x in rows],
    }  # fmt: skip
    store, journal = ws.store("core"), ws.journal("core")
    for root, batch in records.items():
        key = f"{root}/sensors/{site}/2026/01/01/b1.parquet"
        info = store.put(key, encode_batch(root, batch, site, "b1"))
        journal.append(
            Event(type=EventType.OBJECT_REPLICATED, site="core", subject=key,
                  data={"key": key, "sha256": info.sha256, "source_site": site})
        )  # fmt: skip
    journal.close()


def test_the_documented_user_pipeline_runs(tmp_path: Path) -> None:
    code, config = example_blocks()
    (tmp_path / "my_pipelines.py").write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    assert cli("init", str(tmp_path / "ws"), env=env).returncode == 0
    yaml_file = tmp_path / "ws" / "edgeloop.yaml"
    yaml_file.write_text(yaml_file.read_text() + config)
    ws = Workspace.load(tmp_path / "ws")
    land(ws, "edge-a", 1)
    done = cli("core", "--once", "--no-monitor", "-w", str(ws.root), env=env)
    assert done.returncode == 0, done.stderr
    runs = RunStore(ws.state_dir("core") / "pipelines.db")
    try:
        (run,) = runs.list_runs()
    finally:
        runs.close()
    assert run.pipeline == "anomaly" and run.state == "succeeded", run.error
    assert [s.step for s in run.steps] == ["prepare", "validate", "fit", "report"]
    assert run.outputs is not None and run.outputs["result"]["rows"] == 40
    shown = cli("pipeline", "runs", run.run_id, "-w", str(ws.root), env=env)
    assert shown.returncode == 0 and "succeeded" in shown.stdout

"""Kubeflow compilation: the YAML loads with the kfp SDK and runs with kfp's SubprocessRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

kfp = pytest.importorskip("kfp")
REPO = Path(__file__).resolve().parents[2]


def test_compile_cli_writes_a_kfp_v2_pipeline_that_runs_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    out = tmp_path / "pipeline.yaml"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from edgeloop.cli.main import run; run()",
            "pipeline",
            "compile",
            "tests.pipeline.steps_for_tests:ARITHMETIC",
            "--target",
            "kubeflow",
            "-o",
            str(out),
            "-w",
            str(tmp_path),
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    spec = yaml.safe_load(out.read_text())
    assert spec["schemaVersion"] == "2.1.0"
    tasks = spec["root"]["dag"]["tasks"]
    names = {t["taskInfo"]["name"] for t in tasks.values()}
    assert names == {"numbers", "squares", "total"}
    executors = spec["deploymentSpec"]["executors"]
    assert all("pipeline" in json.dumps(e) and "step" in json.dumps(e) for e in executors.values())

    from kfp import components, local

    component = components.load_component_from_file(str(out))
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp-root")
    )
    task = component(run_inputs=json.dumps({"n": 4}))
    assert json.loads(task.output) == {"count": 4, "sum_squares": 14}


def test_a_failing_step_fails_the_kfp_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    from kfp import components, local
    from tests.pipeline.steps_for_tests import BROKEN

    from edgeloop.pipeline.compile.kubeflow import compile_kubeflow

    out = compile_kubeflow(BROKEN, tmp_path / "broken.yaml")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp-root"),
        raise_on_error=True,
    )
    with pytest.raises(RuntimeError, match="FAILURE"):
        components.load_component_from_file(str(out))(run_inputs=json.dumps({"n": 1}))


def test_artifacts_pass_through_the_store_under_kfp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    from kfp import components, local
    from tests.pipeline.steps_for_tests import ARTIFACTS

    from edgeloop.pipeline.compile.kubeflow import compile_kubeflow
    from edgeloop.store import open_store

    store_dir = tmp_path / "store"
    out = compile_kubeflow(ARTIFACTS, tmp_path / "artifacts.yaml", store_url=str(store_dir))
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp-root")
    )
    task = components.load_component_from_file(str(out))(run_inputs=json.dumps({"n": 2}))
    assert json.loads(task.output) == 512
    keys = [o.key for o in open_store(str(store_dir)).list("pipelines/runs/")]
    assert len(keys) == 1 and keys[0].endswith("/blob/blob.bin")

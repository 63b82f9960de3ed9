"""`edgeloop models package` and `edgeloop serve` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import skops.io as sio
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.serving import load_package
from edgeloop.testing.serving import Doubler, forest, training_data


def test_models_package_writes_onnx_and_skops_packages(tmp_path: Path) -> None:
    estimator = tmp_path / "rf.skops"
    sio.dump(forest(), estimator)
    for fmt in ("onnx", "skops"):
        out = tmp_path / "repo" / f"rf-{fmt}" / "1"
        result = CliRunner().invoke(app, ["models", "package", str(estimator), "--name",
                                          f"rf-{fmt}", "--version", "1", "--out", str(out),
                                          "--format", fmt, "--feature", "a", "--feature", "b",
                                          "--feature", "c", "--feature", "d"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["format"] == fmt
        manifest = load_package(out).manifest
        assert manifest.feature_names == ["a", "b", "c", "d"] and manifest.format.value == fmt


def test_models_package_refuses_untrusted_types(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = training_data()
    estimator = tmp_path / "custom.skops"
    sio.dump(make_pipeline(Doubler(), LogisticRegression()).fit(x, y), estimator)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["models", "package", str(estimator), "--name", "c",
                                      "--version", "1", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1
    assert "allowlist" in result.output and not out.exists()


def test_serve_without_models_says_what_to_give(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "--repository" in result.output

"""Package loading refuses unsafe packages before deserializing anything; runtimes load."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from edgeloop.errors import PackageError, UntrustedModel
from edgeloop.model.manifest import MANIFEST_NAME
from edgeloop.serving import load_package, package_estimator
from edgeloop.serving.runtimes import RuntimeOptions, open_runtime
from edgeloop.serving.runtimes.sklearn import check_types
from edgeloop.testing.serving import Doubler, forest, make_package, training_data


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return make_package(tmp_path / "repo", "demo", 1)


def _manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST_NAME).read_text())


def _write_manifest(path: Path, doc: dict) -> None:
    (path / MANIFEST_NAME).write_text(json.dumps(doc))


@pytest.mark.parametrize("fmt", ["onnx", "skops"])
def test_packaged_forest_predicts_like_the_estimator(tmp_path: Path, fmt: str) -> None:
    path = make_package(tmp_path, "demo", 1, fmt=fmt)
    loaded = load_package(path)
    assert loaded.manifest.name == "demo" and loaded.manifest.format.value == fmt
    runtime = open_runtime(loaded, RuntimeOptions())
    x, _ = training_data(seed=5)
    outputs = runtime.predict({"input": x})
    np.testing.assert_array_equal(outputs["label"], forest().predict(x))
    np.testing.assert_allclose(outputs["probabilities"], forest().predict_proba(x), atol=1e-5)
    assert outputs["probabilities"].dtype == np.float32


def test_regressor_package_answers_predictions(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestRegressor

    x, y = training_data()
    model = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, y.astype(float))
    manifest = package_estimator(model, tmp_path / "r", name="reg", version=1)
    assert [o.name for o in manifest.outputs] == ["predictions"]
    out = open_runtime(load_package(tmp_path / "r")).predict({"input": x[:5]})
    np.testing.assert_allclose(out["predictions"][:, 0], model.predict(x[:5]), rtol=1e-5)


def test_existing_version_is_never_overwritten(package: Path) -> None:
    with pytest.raises(PackageError, match="never overwritten"):
        package_estimator(forest(), package, name="demo", version=1)


@pytest.mark.parametrize("name", ["model.pkl", "weights.joblib", "extra.pickle", "net.pt"])
def test_code_executing_files_are_refused_beside_a_good_model(package: Path, name: str) -> None:
    (package / name).write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UntrustedModel, match="code-executing"):
        load_package(package)


def test_pickle_bytes_under_an_onnx_name_are_refused(package: Path) -> None:
    (package / "model.onnx").write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    with pytest.raises(UntrustedModel, match="pickle"):
        load_package(package)


def test_symlinked_file_is_refused(package: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"x")
    os.symlink(outside, package / "other.onnx")
    with pytest.raises(PackageError, match="symlink"):
        load_package(package)


def test_symlinked_package_dir_is_refused(package: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    os.symlink(package, link)
    with pytest.raises(PackageError, match="symlink"):
        load_package(link)


def test_model_file_escaping_the_package_is_refused(package: Path) -> None:
    doc = _manifest(package)
    doc["model_file"] = "../../outside.onnx"
    _write_manifest(package, doc)
    with pytest.raises(PackageError, match="model_file"):
        load_package(package)


def test_missing_manifest_and_missing_model_file(package: Path) -> None:
    (package / "model.onnx").unlink()
    with pytest.raises(PackageError, match="not in the package"):
        load_package(package)
    (package / MANIFEST_NAME).unlink()
    with pytest.raises(PackageError, match=r"no edgeloop-model\.json"):
        load_package(package)


@pytest.mark.parametrize(
    ("field", "match"),
    [("inputs", "are not the graph's inputs"), ("outputs", "are not outputs of the graph")],
)
def test_onnx_tensor_names_must_be_the_graphs(package: Path, field: str, match: str) -> None:
    doc = _manifest(package)
    doc[field][0]["name"] = "renamed"
    if field == "inputs":
        doc["sample_input"] = {"renamed": doc["sample_input"]["input"]}
    _write_manifest(package, doc)
    with pytest.raises(PackageError, match=match):
        open_runtime(load_package(package), RuntimeOptions())


def test_runtime_and_format_must_agree(package: Path) -> None:
    doc = _manifest(package)
    doc["runtime"] = "sklearn"
    _write_manifest(package, doc)
    with pytest.raises(PackageError, match="serves format skops"):
        load_package(package)


def test_safetensors_format_has_no_runtime_here(package: Path) -> None:
    doc = _manifest(package)
    doc["format"] = "safetensors"
    _write_manifest(package, doc)
    with pytest.raises(PackageError, match="runtime onnx serves format onnx"):
        load_package(package)


def test_verifier_runs_before_the_manifest_is_parsed(package: Path) -> None:
    (package / MANIFEST_NAME).write_text("{not json")  # would fail parsing if read first
    seen: list[Path] = []

    def verify(path: Path) -> None:
        seen.append(path)
        raise PackageError("signature does not verify")

    with pytest.raises(PackageError, match="signature"):
        load_package(package, verify=verify)
    assert seen == [package.resolve()]


def test_verifier_that_passes_lets_the_package_load(package: Path) -> None:
    calls: list[Path] = []
    loaded = load_package(package, verify=calls.append)
    assert calls == [package.resolve()] and loaded.manifest.version == 1


def test_skops_with_a_type_outside_the_allowlist_is_refused(tmp_path: Path) -> None:
    x, y = training_data()
    model = make_pipeline(Doubler(), LogisticRegression()).fit(x, y)
    path = tmp_path / "custom.skops"
    sio.dump(model, path)
    with pytest.raises(UntrustedModel, match="Doubler"):
        check_types(path)
    package_estimator(model, tmp_path / "pkg", name="custom", version=1, fmt="skops")  # type: ignore[arg-type]
    with pytest.raises(UntrustedModel, match="allowlist"):
        open_runtime(load_package(tmp_path / "pkg"))


def test_corrupt_skops_file_is_a_package_error(tmp_path: Path) -> None:
    path = make_package(tmp_path, "demo", 1, fmt="skops")
    (path / "model.skops").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(PackageError, match="skops"):
        open_runtime(load_package(path))

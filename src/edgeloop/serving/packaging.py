"""Turn a fitted scikit-learn estimator into a model package (ONNX via skl2onnx, or skops)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.errors import PackageError
from edgeloop.model.manifest import (
    MANIFEST_NAME,
    Datatype,
    ModelCard,
    ModelFormat,
    ModelManifest,
    Runtime,
    TensorSpec,
)

INPUT_NAME = "input"


def package_estimator(
    estimator: Any,
    out_dir: Path,
    *,
    name: str,
    version: int,
    fmt: ModelFormat = ModelFormat.ONNX,
    feature_names: list[str] | None = None,
    sample: np.ndarray | None = None,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
    card: ModelCard | None = None,
) -> ModelManifest:
    """Write `estimator` as a package at `out_dir` (which must not exist), atomically.

    Classifiers get outputs `label` and `probabilities`; regressors get `predictions`.
    """
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int):
        raise PackageError("the estimator is not fitted (it has no n_features_in_); fit it first")
    if out_dir.exists():
        raise PackageError(f"{out_dir} already exists; package versions are never overwritten")
    classifier = hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_")
    if sample is None:
        sample = np.zeros((1, n_features), dtype=np.float32)
    names = feature_names or [str(f) for f in getattr(estimator, "feature_names_in_", [])]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if fmt == ModelFormat.ONNX:
            input_type, outputs, model_file = _write_onnx(estimator, work, n_features, classifier)
            runtime = Runtime.ONNX
        elif fmt == ModelFormat.SKOPS:
            input_type, outputs, model_file = _write_skops(estimator, work, classifier)
            runtime = Runtime.SKLEARN
        else:
            raise PackageError(f"cannot package a scikit-learn estimator as {fmt}")
        manifest = ModelManifest(
            name=name,
            version=version,
            format=fmt,
            runtime=runtime,
            model_file=model_file,
            task="classification" if classifier else "regression",
            inputs=[TensorSpec(name=INPUT_NAME, datatype=input_type, shape=[-1, n_features])],
            outputs=outputs,
            feature_names=names,
            sample_input={INPUT_NAME: np.asarray(sample, dtype=np.float64).tolist()},
            metrics=metrics or {},
            lineage=lineage or {},
            card=card or ModelCard(),
        )
        (work / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        _fsync_tree(work)
        work.rename(out_dir)  # the version appears whole or not at all
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _write_onnx(
    estimator: Any, work: Path, n_features: int, classifier: bool
) -> tuple[Datatype, list[TensorSpec], str]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if classifier else None
    try:
        onx = to_onnx(
            estimator,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            options=options,
        )
    except Exception as exc:  # skl2onnx raises many kinds for unsupported estimators
        raise PackageError(f"skl2onnx cannot convert {type(estimator).__name__}: {exc}") from None
    graph_outputs = [o.name for o in onx.graph.output]
    if classifier:
        n_classes = len(estimator.classes_)
        outputs = [
            TensorSpec(name="label", datatype=_label_type(estimator), shape=[-1]),
            TensorSpec(name="probabilities", datatype=Datatype.FP32, shape=[-1, n_classes]),
        ]
        if graph_outputs != ["label", "probabilities"]:
            raise PackageError(f"unexpected ONNX outputs {graph_outputs} for a classifier")
    else:
        # Rename the single regression output so every regressor answers `predictions`.
        _rename_output(onx, graph_outputs[0], "predictions")
        outputs = [TensorSpec(name="predictions", datatype=Datatype.FP32, shape=[-1, 1])]
    (work / "model.onnx").write_bytes(onx.SerializeToString())
    return Datatype.FP32, outputs, "model.onnx"


def _label_type(estimator: Any) -> Datatype:
    kind = np.asarray(estimator.classes_).dtype.kind
    if kind in "iu":
        return Datatype.INT64
    if kind in "OUS":
        return Datatype.BYTES
    raise PackageError(f"classes of dtype {np.asarray(estimator.classes_).dtype} are not supported")


def _rename_output(onx: Any, old: str, new: str) -> None:
    for node in onx.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    for output in onx.graph.output:
        if output.name == old:
            output.name = new


def _write_skops(
    estimator: Any, work: Path, classifier: bool
) -> tuple[Datatype, list[TensorSpec], str]:
    """Same tensor schema as the ONNX form, so a swap between the two is invisible to clients."""
    import skops.io as sio

    sio.dump(estimator, work / "model.skops")
    if classifier:
        outputs = [
            TensorSpec(name="label", datatype=_label_type(estimator), shape=[-1]),
            TensorSpec(
                name="probabilities", datatype=Datatype.FP32, shape=[-1, len(estimator.classes_)]
            ),
        ]
    else:
        outputs = [TensorSpec(name="predictions", datatype=Datatype.FP32, shape=[-1, 1])]
    return Datatype.FP32, outputs, "model.skops"


def _fsync_tree(root: Path) -> None:
    for path in root.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

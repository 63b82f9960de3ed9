"""A regression pipeline for tests: the built-in retraining pipeline with `train` and
`evaluate` replaced for a scikit-learn regressor (the built-in `register` is kept)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.pipeline import StepContext, step
from edgeloop.pipeline.retrain import build_retrain, data


def _xy(table: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(table["features"].to_pylist(), dtype=np.float32)
    return x, np.asarray(table["label"].to_pylist(), dtype=np.float64)


@step(name="train")
def train_regressor(
    validate: dict[str, Any], config: dict[str, Any], ctx: StepContext
) -> dict[str, Any]:
    """Fit a linear regression and package it as ONNX (output `predictions`)."""
    from sklearn.linear_model import LinearRegression

    from edgeloop.serving.packaging import package_estimator

    x, y = _xy(data.from_parquet(ctx.read_artifact(validate["dataset"])))
    fitted = LinearRegression().fit(x, y)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "package"
        package_estimator(fitted, out, name=config["model"], version=1)
        files = {
            p.relative_to(out).as_posix(): ctx.put_artifact(
                "package/" + p.relative_to(out).as_posix(), p.read_bytes()
            )
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }
    return {"package": files, "train_rows": len(x)}


@step(name="evaluate")
def evaluate_regressor(
    train: dict[str, Any], validate: dict[str, Any], ctx: StepContext
) -> dict[str, Any]:
    """Score the candidate by mean absolute error (the gate reads minus MAE as its score)."""
    import onnxruntime as ort

    x, y = _xy(data.from_parquet(ctx.read_artifact(validate["dataset"])))
    session = ort.InferenceSession(
        ctx.read_artifact(train["package"]["model.onnx"]), providers=["CPUExecutionProvider"]
    )
    predicted = session.run(["predictions"], {"input": x})[0].reshape(-1)
    mae = float(np.mean(np.abs(predicted - y)))
    holdout = {"accuracy": -mae, "rows": len(y), "per_site": {}}
    return {"candidate": {"holdout": holdout}, "champion": None, "champion_version": None}


RETRAIN_REGRESSION = build_retrain(replace=[train_regressor, evaluate_regressor])

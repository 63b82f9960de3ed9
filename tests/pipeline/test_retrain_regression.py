"""The built-in `register` step with a regressor: the reference profile it stores holds the
model's numeric predictions as numeric (not as category labels), and the drift job reads a
regressor's served outputs against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from edgeloop.monitor import DriftJob, load_profile
from edgeloop.monitor.profile import NumericProfile
from edgeloop.monitor.window import floor_time
from edgeloop.pipeline.core import CorePipelines
from edgeloop.serving.capture import encode_batch
from edgeloop.serving.oip import encode_tensor
from edgeloop.workspace import Workspace, init_workspace

CONFIG = {"model": "price", "n_features": 2, "labels": None, "max_label_share": None}


def served(x: np.ndarray, y: np.ndarray, start: datetime, outputs: np.ndarray) -> list[dict]:
    """Records as edgeloop's server captures them for a regressor (output `predictions`)."""
    records = [
        {"time": (start + timedelta(seconds=i)).timestamp(), "request_id": f"r{start:%H}-{i}",
         "model": "price", "version": "1", "label": f"{target:.6f}",
         "inputs": [encode_tensor("input", row.reshape(1, -1).astype(np.float32))],
         "outputs": [encode_tensor("predictions", np.array([[out]], dtype=np.float32))]}
        for i, (row, target, out) in enumerate(zip(x, y, outputs, strict=True))
    ]  # fmt: skip
    loaded: list[dict] = orjson.loads(orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY))
    return loaded


def test_register_profiles_a_regressors_predictions_as_numbers(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ws = Workspace.load(ws.root)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 2))
    y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(0, 0.1, 400) + 10.0
    start = floor_time(datetime.now(UTC), timedelta(hours=1)) - timedelta(hours=2)
    store = ws.store("core")
    members = []
    for root in ("captures", "labels"):
        key = f"{root}/price/edge-a/{start:%Y/%m/%d}/b1.parquet"
        info = store.put(key, encode_batch(root, served(x, y, start, y), "edge-a", "b1"))
        members.append({"key": key, "sha256": info.sha256, "site": "edge-a"})
    core = CorePipelines.open(ws)
    try:
        record = core.run(
            "regression_steps:RETRAIN_REGRESSION",
            params={"window": {"id": "w1", "members": members}, "config": CONFIG},
        )
    finally:
        core.close()
    assert record.state == "succeeded", record.error
    result = (record.outputs or {})["result"]
    assert result["registered"] is True and result["profile"] == "monitoring/profiles/price/1.json"
    assert set(result["site_profiles"]) == {"edge-a"}

    profile = load_profile(store, "price", "1")
    assert isinstance(profile.prediction, NumericProfile)
    assert profile.prediction.mean is not None and abs(profile.prediction.mean - 10.0) < 0.3
    assert profile.prediction.min is not None and profile.prediction.min < 8.0  # real values

    # The next hour's served outputs are read as numbers and judged against it.
    later = start + timedelta(hours=1)
    x2 = rng.normal(size=(300, 2))
    predicted = 2.0 * x2[:, 0] - x2[:, 1] + 10.0
    key = f"captures/price/edge-a/{later:%Y/%m/%d}/b2.parquet"
    store.put(
        key, encode_batch("captures", served(x2, predicted, later, predicted), "edge-a", "b2")
    )
    report = (
        DriftJob(store, ws.config.monitoring)
        .run_site("price", "edge-a", later, later + timedelta(hours=1), write=False, emit=False)
        .report
    )
    assert report.prediction is not None and report.prediction.kind == "numeric"
    assert report.prediction.status == "ok" and report.status == "no_drift", report.drifted

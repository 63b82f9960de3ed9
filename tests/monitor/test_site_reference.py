"""Per-site drift references. A version retrained after one site's data changed stores, beside
its profile of every site's training rows, a profile per site of that site's newest rows that
look alike; the drift job judges each site against its own. So after a retrain on drifted
data, neither the drifted site nor the unchanged one keeps reporting drift (against the
pooled profile both would)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from edgeloop.journal import JournalSink
from edgeloop.model.events import EventType
from edgeloop.monitor import DriftJob, build_profile, load_profile, save_profile
from edgeloop.monitor.drift import DriftSettings
from edgeloop.monitor.profiles import load_reference, profile_versions, profiled_sites
from edgeloop.monitor.site_reference import alike_tail
from edgeloop.monitor.window import floor_time
from edgeloop.pipeline.core import CorePipelines
from edgeloop.serving.capture import encode_batch
from edgeloop.serving.oip import encode_tensor
from edgeloop.store import LocalStore
from edgeloop.workspace import Workspace

CONFIG = """
monitoring:
  window: 1h
  min_rows: 50
pipelines:
  retrain:
    ref: edgeloop.pipeline.retrain:RETRAIN
    params:
      # The references are under test here, not the gate: a candidate passes.
      config: {model: churn, n_features: 2, labels: ["0", "1"], min_rows: 50,
               max_site_share: 1.0, min_improvement: -1.0, max_site_regression: 1.0,
               promote: true}
"""


def test_alike_tail_stops_at_the_change() -> None:
    rng = np.random.default_rng(1)
    before, after = rng.normal(0, 1, 3000), rng.normal(1.5, 1, 700)
    settings = DriftSettings(min_rows=50)
    kept = alike_tail({"x": np.concatenate([before, after])}, block=50, settings=settings)
    assert 650 <= kept <= 750  # the 700 rows since the change, within a block (50 rows)
    steady = {"x": rng.normal(0, 1, 3000), "y": rng.normal(0, 1, 3000)}
    assert alike_tail(steady, block=50, settings=settings) == 3000
    assert alike_tail({"x": after[:30]}, block=50, settings=settings) == 30  # fewer: all


def test_site_profiles_live_beside_the_version_and_fall_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "core")
    rng = np.random.default_rng(2)
    save_profile(store, build_profile("churn", "2", {"x": rng.normal(size=200)}))
    save_profile(store, build_profile("churn", "2", {"x": rng.normal(size=80)}, site="edge-b"))
    assert profile_versions(store, "churn") == ["2"]  # site profiles are not versions
    assert profiled_sites(store, "churn", "2") == ["edge-b"]
    own = load_reference(store, "churn", "2", "edge-b")
    assert own.site == "edge-b" and own.rows == 80
    pooled = load_reference(store, "churn", None, "edge-a")
    assert pooled.site is None and pooled.rows == 200
    assert load_profile(store, "churn", "2").site is None


def write_batch(
    ws: Workspace, site: str, batch: str, x: np.ndarray, start: datetime, version: str
) -> list[dict[str, Any]]:
    """Captures (OIP tensors, as serving writes them) and labels of `x` over the hour from
    `start`, put at the core as if replicated; returns them as window members."""
    seconds = np.linspace(0, 3599, len(x))
    records = [
        {"time": (start + timedelta(seconds=float(s))).timestamp(),
         "request_id": f"{site}-{batch}-{i}", "model": "churn", "version": version,
         "label": "1" if row[0] + row[1] > 0 else "0",
         "inputs": [encode_tensor("input", row.reshape(1, -1).astype(np.float32))],
         "outputs": [encode_tensor("label", np.array(["1" if row.sum() > 0 else "0"]))]}
        for i, (s, row) in enumerate(zip(seconds, x, strict=True))
    ]  # fmt: skip
    records = orjson.loads(orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY))
    store = ws.store("core")
    members = []
    for root in ("captures", "labels"):
        key = f"{root}/churn/{site}/{start:%Y/%m/%d}/{batch}.parquet"
        info = store.put(key, encode_batch(root, records, site, batch))
        members.append({"key": key, "sha256": info.sha256, "site": site})
    return members


def retrain(ws: Workspace, members: list[dict[str, Any]], run: str) -> dict[str, Any]:
    core = CorePipelines.open(ws)
    try:
        record = core.run("retrain", params={"window": {"id": run, "members": members}})
    finally:
        core.close()
    assert record.state == "succeeded", record.error
    result: dict[str, Any] = (record.outputs or {})["result"]
    assert result["registered"] is True, result
    return result


@pytest.fixture
def ws(workspace_dir: Path) -> Workspace:
    config = workspace_dir / "edgeloop.yaml"
    config.write_text(config.read_text() + CONFIG)
    return Workspace.load(workspace_dir)


def test_after_a_retrain_on_drifted_data_no_site_reports_drift(ws: Workspace) -> None:
    rng = np.random.default_rng(6)
    hour = floor_time(datetime.now(UTC), timedelta(hours=1))
    shift = np.array([1.5, 0.0])
    # Version 1: two days ago, both edges alike.
    old = hour - timedelta(days=2)
    members = [
        m for site in ("edge-a", "edge-b")
        for m in write_batch(ws, site, "old", rng.normal(size=(300, 2)), old, "0")
    ]  # fmt: skip
    first = retrain(ws, members, "v1")
    assert first["version"] == 1 and set(first["site_profiles"]) == {"edge-a", "edge-b"}

    # Three hours ago edge-b changed; version 2 is trained on that hour of both edges.
    drifted = hour - timedelta(hours=3)
    members = write_batch(ws, "edge-a", "h1", rng.normal(size=(400, 2)), drifted, "1")
    members += write_batch(ws, "edge-b", "h1", rng.normal(size=(400, 2)) + shift, drifted, "1")
    second = retrain(ws, members, "v2")
    assert second["version"] == 2
    store = ws.store("core")
    pooled = load_profile(store, "churn", "2")
    own_b = load_reference(store, "churn", "2", "edge-b")
    assert own_b.site == "edge-b" and own_b.rows < pooled.rows

    # The next two hours: edge-a as ever, edge-b in its new regime, served by version 2.
    journal = ws.journal("core")
    job = DriftJob(store, ws.config.monitoring, JournalSink(journal))
    try:
        for i, start in enumerate((hour - timedelta(hours=2), hour - timedelta(hours=1))):
            write_batch(ws, "edge-a", f"n{i}", rng.normal(size=(400, 2)), start, "2")
            write_batch(ws, "edge-b", f"n{i}", rng.normal(size=(400, 2)) + shift, start, "2")
            end = start + timedelta(hours=1)
            for site in ("edge-a", "edge-b"):
                outcome = job.run_site("churn", site, start, end)
                report = outcome.report
                assert report.version == "2" and report.reference_site == site
                assert report.status == "no_drift", (site, report.drifted)
                # The pooled reference of the same version would call drift here.
                if site == "edge-b":
                    against_pooled = job.run_site(
                        "churn", site, start, end, profile=pooled, write=False, emit=False
                    )
                    assert against_pooled.report.status == "drift"
        drift_events = journal.read(types=[EventType.DRIFT_DETECTED])
    finally:
        journal.close()
    assert drift_events == []  # no further drift.detected after the new version

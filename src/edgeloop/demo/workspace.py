"""The demo's workspace: `edgeloop init` plus retraining, triggers, monitoring and rollouts
configured for a short run, a history of labelled data at the core, and model version 1
trained from it by the built-in retraining pipeline."""

from __future__ import annotations

import shutil
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from edgeloop.demo.scenario import FEATURES, LABELS, MODEL, STEADY, sample, truth
from edgeloop.errors import ConfigError, PipelineError
from edgeloop.pipeline.retrain import data
from edgeloop.workspace import CONFIG_NAME, Workspace, init_workspace
from edgeloop.workspace.config import (
    ModelMonitoring,
    MonitoringConfig,
    PipelineConfig,
    QualityBound,
    ReplicationRule,
    Tier,
    TriggerRule,
)

PIPELINE = "retrain"
DEPLOYMENT = "maintenance"


@dataclass(frozen=True)
class DemoSettings:
    """The pace of one demo run; `fast()` is for tests, the default for people."""

    duration: float = 240.0
    """Seconds of traffic at most (the run ends earlier in fast mode once the loop closed)."""
    drift_after: float = 60.0
    """Seconds of traffic before the drift starts at the drifting site."""
    rate: float = 20.0
    """Inference requests per second at each edge."""
    label_delay: float = 2.0
    """Seconds until a request's true label is posted back (feedback)."""
    history_rows: int = 2000
    """Labelled rows per edge that version 1 is trained on."""
    capture_batch_seconds: float = 3.0
    min_records: int = 40
    """Replicated objects (capture and label batches) that close a retraining window."""
    drift_window: str = "30s"
    monitor_every: str = "10s"
    wave_hold: float = 5.0
    """Seconds each wave's sites must stay healthy before the next wave."""
    replicate_poll: float = 0.5
    fast: bool = False

    @classmethod
    def fast_mode(cls, duration: float = 90.0) -> DemoSettings:
        return cls(
            duration=duration,
            drift_after=6.0,
            rate=15.0,
            label_delay=0.5,
            history_rows=600,
            capture_batch_seconds=1.0,
            min_records=16,
            drift_window="15s",
            monitor_every="5s",
            wave_hold=0.0,
            replicate_poll=0.2,
            fast=True,
        )


def fresh_directory(directory: Path) -> None:
    """Remove an earlier demo workspace, refusing to touch a directory that is not one."""
    if not directory.exists():
        return
    if not (directory / CONFIG_NAME).exists() and any(directory.iterdir()):
        raise ConfigError(
            f"{directory} exists and is not an edgeloop workspace; choose another --dir"
        )
    shutil.rmtree(directory)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_workspace(
    directory: Path, settings: DemoSettings, *, free_ports: bool = False
) -> Workspace:
    """A new workspace in `directory` (a core and two edges) set up for the demo.

    Ports are the workspace defaults unless taken (or `free_ports`): then free ones.
    """
    fresh_directory(directory)
    ws = init_workspace(directory, "demo")
    config = ws.config
    sites = []
    for site in config.sites:
        if site.tier == Tier.EDGE and site.serving_port is not None:
            if free_ports or not _port_free(site.serving_port):
                site = site.model_copy(update={"serving_port": _free_port()})
        elif site.tier == Tier.CORE:
            port = site.control_port or 8700
            if free_ports or not _port_free(port):
                port = _free_port()
            site = site.model_copy(update={"control_port": port})
        sites.append(site)
    core = next(s.name for s in sites if s.tier == Tier.CORE)
    rules = list(config.replication)
    for edge in (s.name for s in sites if s.tier == Tier.EDGE):
        for prefix in ("models/", "fleet/desired/"):
            if not any(r.source == core and r.target == edge and r.prefix == prefix for r in rules):
                name = f"{edge}-{prefix.split('/')[-2]}-down"
                rules.append(ReplicationRule(name=name, source=core, target=edge, prefix=prefix))
    retrain = PipelineConfig(
        ref="edgeloop.pipeline.retrain:RETRAIN",
        params={
            "config": {
                "model": MODEL,
                "n_features": len(FEATURES),
                "labels": list(LABELS),
                "min_improvement": 0.01,
                "max_site_regression": 0.05,
                "max_site_share": 0.6,
                "promote": True,
                "min_rows": 50,
                "drift_lookback": "1h",
            }
        },
    )
    triggers = [
        TriggerRule(
            name="new-data",
            pipeline=PIPELINE,
            event="object.replicated",
            min_records=settings.min_records,
            max_wait="5m",
        ),
        TriggerRule(name="on-drift", pipeline=PIPELINE, event="drift.detected", model=MODEL),
    ]
    monitoring = MonitoringConfig(
        window=settings.drift_window,
        every=settings.monitor_every,
        grace="1s",
        catch_up="10m",
        quality_since="10m",
        min_rows=40,
        models={
            MODEL: ModelMonitoring(
                quality=QualityBound(bound=0.8, bucket=settings.drift_window, min_labels=20)
            )
        },
    )
    config = config.model_copy(
        update={
            "sites": sites,
            "replication": rules,
            "pipelines": {PIPELINE: retrain},
            "triggers": triggers,
            "monitoring": monitoring,
        }
    )
    Workspace(ws.root, config).save()
    return Workspace.load(ws.root)


def labelled_batch(
    x: np.ndarray,
    y: np.ndarray,
    ids: list[str],
    when: datetime,
    site: str,
    *,
    version: str,
    batch_id: str,
) -> tuple[bytes, bytes]:
    """A capture batch of rows `x` and its label batch `y` (Parquet, in the layout edgeloop's
    server writes), all stamped `when`."""
    rows = len(ids)
    times = pa.array([when] * rows, type=pa.timestamp("us", tz="UTC"))
    inputs = [
        orjson.dumps(
            [{"name": "input", "shape": [1, len(FEATURES)], "datatype": "FP32",
              "data": [float(v) for v in row]}]
        ).decode()
        for row in x
    ]  # fmt: skip
    captures = pa.table(
        {
            "time": times,
            "request_id": ids,
            "site": [site] * rows,
            "model": [MODEL] * rows,
            "version": [version] * rows,
            "inputs": inputs,
            "outputs": ["[]"] * rows,
            "latency_ms": [0.0] * rows,
            "batch_id": [batch_id] * rows,
        }
    )
    labels = pa.table(
        {
            "time": times,
            "request_id": ids,
            "site": [site] * rows,
            "model": [MODEL] * rows,
            "label": [str(v) for v in y],
            "batch_id": [batch_id] * rows,
        }
    )
    return data.to_parquet(captures), data.to_parquet(labels)


def history_batches(rows: int, sites: list[str], seed: int = 7) -> dict[str, bytes]:
    """Labelled history for version 1: per site one capture and one label batch (Parquet, in
    the layout edgeloop's serving writes), dated two days ago so drift windows skip them."""
    rng = np.random.default_rng(seed)
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    out: dict[str, bytes] = {}
    for site in sites:
        x = sample(rng, rows, STEADY)
        y = truth(rng, x)
        ids = [uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i).hex for i in range(rows)]
        captures, labels = labelled_batch(x, y, ids, when, site, version="0", batch_id="history")
        day = f"{when:%Y/%m/%d}"
        out[f"captures/{MODEL}/{site}/{day}/history.parquet"] = captures
        out[f"labels/{MODEL}/{site}/{day}/history.parquet"] = labels
    return out


def train_first_version(ws: Workspace, settings: DemoSettings) -> dict[str, Any]:
    """Put the history into the core store and run the retraining pipeline on it once, here:
    version 1, signed, registered and promoted to champion. Returns the run's outputs."""
    from edgeloop.pipeline.core import CorePipelines
    from edgeloop.registry.workspace import open_registry

    core = ws.sites(Tier.CORE)[0].name
    store = ws.store(core)
    members = []
    edges = [s.name for s in ws.sites(Tier.EDGE)]
    for key, blob in history_batches(settings.history_rows, edges).items():
        info = store.put(key, blob)
        members.append({"key": key, "sha256": info.sha256, "site": key.split("/")[2]})
    pipelines = CorePipelines.open(ws, core)
    try:
        record = pipelines.run(PIPELINE, params={"window": {"members": members}})
    finally:
        pipelines.close()
    outputs = record.outputs or {}
    if record.state != "succeeded":
        raise PipelineError(f"training version 1 failed: {record.error or record.state}")
    registry = open_registry(ws)
    try:
        versions = registry.versions(MODEL)
        if not versions:
            raise PipelineError("training version 1 registered nothing; see the run record")
        if registry.aliases(MODEL).get("champion") is None:  # pipelines without `promote`
            registry.promote(MODEL, versions[-1].version)
    finally:
        registry.close()
    return {"run_id": record.run_id, "outputs": outputs}

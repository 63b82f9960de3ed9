"""A workspace with something to show, made through the real parts: captures and labels in the
core store, drift reports by the drift job, two registered versions with lineage, sites that
joined and heartbeat over the control-plane API, a rollout its gate halted, journal events."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgeloop.fleet.client import FleetClient
from edgeloop.fleet.control import ControlSettings
from edgeloop.journal import JournalSink
from edgeloop.model.events import Event
from edgeloop.model.manifest import ModelCard
from edgeloop.monitor import DriftJob, build_profile, save_profile
from edgeloop.registry import DatasetRef, Lineage, ObjectRef
from edgeloop.registry.workspace import open_registry
from edgeloop.serving import package_estimator
from edgeloop.store.base import ObjectStore
from edgeloop.testing.driftdata import capture_table, features, predictions_for
from edgeloop.testing.serving import forest
from edgeloop.workspace import Workspace, init_workspace
from edgeloop.workspace.config import ModelMonitoring, MonitoringConfig, QualityBound

MODEL = "churn"
SITES = {"edge-a": 0.0, "edge-b": 1.5}  # edge-b's data drifts
WINDOWS = 3
ROWS = 400
#: A model card field with markup in it: the dashboard must show it as text, never run it.
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
CARD = "Predicts churn from spend, age and channel. " + HOSTILE


def make_workspace(root: Path) -> Workspace:
    """A fresh workspace (a core and two edges) whose churn model has a quality bound."""
    ws = init_workspace(root)
    ws.config.monitoring.models[MODEL] = ModelMonitoring(
        quality=QualityBound(metric="accuracy", bound=0.8, min_labels=30)
    )
    return ws


def settings_for(ws: Workspace) -> ControlSettings:
    settings = ControlSettings.for_workspace(ws)
    settings.heartbeat_flush_interval = 0  # each heartbeat written at once: no race with reads
    settings.tick_interval = 0.2
    return settings


def _parquet(store: ObjectStore, key: str, table: pa.Table) -> ObjectRef:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    store.put(key, data)
    site = key.split("/")[2]
    return ObjectRef(
        key=key, sha256=hashlib.sha256(data).hexdigest(), site=site, records=table.num_rows
    )


def seed_data(ws: Workspace, now: datetime) -> dict[str, list[ObjectRef]]:
    """Captures and labels of the last WINDOWS hours at each edge, in the core store; the
    reference profile of version 1; a drift report per window and site."""
    store = ws.store("core")
    rng = np.random.default_rng(7)
    train = features(rng, 5000)
    save_profile(store, build_profile(MODEL, "1", train, predictions_for(train)))
    end = now.replace(minute=0, second=0, microsecond=0)
    refs: dict[str, list[ObjectRef]] = {"captures": [], "labels": []}
    for site, shift in SITES.items():
        for i in range(WINDOWS):
            start = end - timedelta(hours=WINDOWS - i)
            table = capture_table(
                rng, site, ROWS, shift=shift * i / (WINDOWS - 1), start=start, batch=f"b{i}"
            )
            day = f"{start:%Y/%m/%d}"
            refs["captures"].append(
                _parquet(store, f"captures/{MODEL}/{site}/{day}/batch-{i}.parquet", table)
            )
            # Labels arrive later; at edge-b the model is wrong half the time.
            predicted = table.column("outputs").to_pylist()
            wrong = rng.random(len(predicted)) < (0.5 if site == "edge-b" else 0.05)
            labels = [
                ("0" if p == "1" else "1") if w else p
                for p, w in zip(predicted, wrong, strict=True)
            ]
            refs["labels"].append(
                _parquet(
                    store,
                    f"labels/{MODEL}/{site}/{day}/labels-{i}.parquet",
                    pa.table({"request_id": table.column("request_id"), "label": labels}),
                )
            )
    journal = ws.journal("core")
    try:
        job = DriftJob(store, MonitoringConfig(multivariate=False), JournalSink(journal))
        for site in SITES:
            for i in range(WINDOWS):
                start = end - timedelta(hours=WINDOWS - i)
                job.run_site(MODEL, site, start, start + timedelta(hours=1), version="1")
        for ref in refs["captures"]:
            journal.append(
                Event(
                    id=f"replicated:{ref.key}",
                    type="object.replicated",
                    site=ref.site or "edge-a",
                    subject=ref.key,
                    data={"sha256": ref.sha256, "size": 1},
                )
            )
    finally:
        journal.close()
        store.close()
    return refs


def register_versions(ws: Workspace, tmp: Path, refs: dict[str, list[ObjectRef]]) -> None:
    """Version 1 from edge-a's first hour (champion) and version 2 from both edges' data,
    registered and signed through the workspace's registry, with their runs journaled."""
    registry = open_registry(ws)
    journal = ws.journal("core")
    try:
        for version, captures, accuracy in (
            (1, refs["captures"][:1], 0.91),
            (2, refs["captures"], 0.94),
        ):
            run = f"run-000{version}"
            journal.append(Event(id=f"{run}:started", type="run.started", site="core", subject=run))
            package = tmp / "packages" / str(version)
            package_estimator(
                forest(version),
                package,
                name=MODEL,
                version=version,
                metrics={"accuracy": accuracy, "f1": accuracy - 0.03},
                card=ModelCard(description=CARD, owners=["data-team"], intended_use="demo"),
            )
            labels = [r for r in refs["labels"] if r.site in {c.site for c in captures}]
            lineage = Lineage(
                captures=captures,
                labels=labels,
                dataset=DatasetRef(
                    snapshot=f"snap-{version}", rows=sum(c.records or 0 for c in captures)
                ),
                pipeline="retrain",
                run_id=run,
                code_version="git:abc123",
                parameters={"trees": 5},
            )
            aliases = ["champion"] if version == 1 else ["candidate"]
            registry.register(package, lineage=lineage, aliases=aliases)
            journal.append(
                Event(
                    id=f"{run}:succeeded",
                    type="run.succeeded",
                    site="core",
                    subject=run,
                    data={"version": version},
                )
            )
    finally:
        journal.close()
        registry.close()


@dataclass
class Seeded:
    admin: str
    viewer: str
    agent: str
    rollout: str
    halted_site: str


def seed_fleet(http: httpx.Client, base_url: str, admin: str, tick: Any) -> Seeded:
    """Sites that joined and heartbeat, a deployment, and a rollout to version 2 whose first
    wave turned unhealthy, so its gate halted it; all through the control-plane API."""
    client = FleetClient(base_url, admin, http=http)
    viewer = client.create_token("wall-screen", "viewer", None)["token"]
    agents = {}
    for site, labels in (("edge-a", {"ring": "canary"}), ("edge-b", {"ring": "main"})):
        join = client.join_token(site, labels)["join_token"]
        answer = http.post(f"{base_url}/api/v1/join", headers={"Authorization": f"Bearer {join}"})
        assert answer.status_code == 201, answer.text
        agents[site] = answer.json()["token"]

    telemetry = {
        "edge-a": {"backlog": 3, "capture_drops": 0, "p99_ms": 12.5, "error_rate": 0.0},
        "edge-b": {"backlog": 0, "capture_drops": 2, "p99_ms": 14.0, "error_rate": 0.001},
    }

    def heartbeat(site: str, version: str, healthy: bool, **extra: Any) -> None:
        body = {"loaded": {MODEL: version}, "healthy": healthy, **telemetry[site], **extra}
        answer = http.post(
            f"{base_url}/api/v1/sites/{site}/heartbeat",
            headers={"Authorization": f"Bearer {agents[site]}"},
            json=body,
        )
        assert answer.status_code == 200, answer.text

    heartbeat("edge-a", "1", True)
    heartbeat("edge-b", "1", True)
    client.deploy(MODEL, MODEL, "1", "")
    gate = {"min_healthy_seconds": 0, "max_error_rate": 0.05, "wave_timeout_seconds": 600}
    rollout = client.start_rollout(MODEL, "2", "50,100", gate)
    first = rollout["waves"][0]["sites"][0]["site"]
    heartbeat(first, "2", False, error_rate=0.4, message="error rate 40% after the swap")
    for _ in range(100):
        tick()
        if client.rollout(rollout["id"])["state"] == "rolled_back":
            break
    else:
        raise AssertionError("the rollout was not halted")
    heartbeat(first, "1", True)  # rolled back, healthy again
    return Seeded(admin, viewer, agents["edge-a"], rollout["id"], first)


def seed_workspace(ws: Workspace, tmp: Path) -> None:
    """Everything that is not the fleet: data, drift reports, versions, journal events."""
    refs = seed_data(ws, datetime.now(UTC))
    register_versions(ws, tmp, refs)

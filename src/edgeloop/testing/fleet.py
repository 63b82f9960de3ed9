"""A control plane in-process for tests: fake clock, memory store, driven over its ASGI app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from edgeloop.fleet.app import create_control_app
from edgeloop.fleet.auth import read_secret_file
from edgeloop.fleet.client import FleetClient
from edgeloop.fleet.control import ControlPlane, ControlSettings, build_control_plane
from edgeloop.journal import SQLiteJournal
from edgeloop.store.memory import MemoryStore


class FakeClock:
    """A clock the test moves by hand, so gates and expiry never depend on real time."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Fleet:
    """One control plane under test: its app client, admin token and parts."""

    plane: ControlPlane
    http: TestClient
    admin: str
    clock: FakeClock
    journal: SQLiteJournal
    store: MemoryStore
    settings: ControlSettings

    def client(self, token: str) -> FleetClient:
        return FleetClient("http://control", token, http=self.http)

    def call(self, method: str, path: str, token: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, path, headers=headers, **kw)

    def token(self, role: str, name: str | None = None, expires_in: float | None = None) -> str:
        result = self.client(self.admin).create_token(name or role, role, expires_in)
        return str(result["token"])

    def join(self, site: str, labels: dict[str, str] | None = None) -> str:
        """Register a site the way an agent does; returns its agent token."""
        join = self.client(self.admin).join_token(site, labels or {})["join_token"]
        response = self.call("POST", "/api/v1/join", join)
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def make_fleet(tmp: Path, db_url: str, clock: FakeClock | None = None) -> Fleet:
    clock = clock or FakeClock()
    journal = SQLiteJournal(tmp / "journal.db")
    store = MemoryStore()
    settings = ControlSettings(
        state_dir=tmp / "control",
        project="acme",
        db_url=db_url,
        journal=journal,
        store=store,
        clock=clock,
        token_cache_seconds=0,
        heartbeat_flush_interval=0,
        long_poll_recheck=0.05,
    )
    plane = build_control_plane(settings)
    http = TestClient(create_control_app(settings, plane=plane), base_url="http://control")
    admin = read_secret_file(settings.admin_token_path)
    return Fleet(plane, http, admin, clock, journal, store, settings)


class SimAgent:
    """A simulated edge agent: fetches and verifies its desired state, reconciles a fake
    serving slot, heartbeats and reports. `bad_versions` turn unhealthy after the swap,
    `failing_versions` fail to load."""

    def __init__(self, fleet: Fleet, site: str, labels: dict[str, str] | None = None) -> None:
        self.fleet = fleet
        self.site = site
        join = fleet.client(fleet.admin).join_token(site, labels or {})["join_token"]
        joined = fleet.call("POST", "/api/v1/join", join).json()
        self.token: str = joined["token"]
        self.signing_key: str = joined["signing_key"]
        self.installed: dict[str, str] = {}
        self.etag: str | None = None
        self.generation = 0
        self.applied: list[tuple[str, str]] = []
        self.bad_versions: set[str] = set()
        self.failing_versions: set[str] = set()
        self.online = True

    def step(self) -> None:
        """One reconcile round: poll desired state, apply it, heartbeat."""
        from edgeloop.fleet.signing import verify_envelope
        from edgeloop.model.desired import DesiredModel, canonical_json, reconcile

        if not self.online:
            return
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        response = self.fleet.http.get(f"/api/v1/sites/{self.site}/desired", headers=headers)
        if response.status_code == 200:
            body = response.json()
            document = verify_envelope(canonical_json(body["envelope"]), self.signing_key)
            if document["generation"] >= self.generation:
                self.generation = document["generation"]
                self.etag = body["etag"]
                desired = [DesiredModel(**m) for m in document["models"]]
                for action in reconcile(desired, self.installed):
                    self._apply(action.kind, action.model, action.version)
        self.heartbeat()

    def _apply(self, kind: str, model: str, version: str | None) -> None:
        if kind == "unload":
            self.installed.pop(model, None)
            return
        if kind == "refuse" or version is None:
            self.report(model, version or "", "refused")
            return
        if version in self.failing_versions:
            self.report(model, version, "failed", "model failed to load")
            return
        self.installed[model] = version
        self.applied.append((model, version))
        self.report(model, version, "rolled_back" if kind == "rollback" else "applied")

    def report(self, model: str, version: str, outcome: str, message: str = "") -> None:
        self.fleet.call(
            "POST",
            f"/api/v1/sites/{self.site}/reports",
            self.token,
            json={"model": model, "version": version, "outcome": outcome, "message": message},
        )

    def heartbeat(self) -> None:
        healthy = not (set(self.installed.values()) & self.bad_versions)
        response = self.fleet.call(
            "POST",
            f"/api/v1/sites/{self.site}/heartbeat",
            self.token,
            json={
                "loaded": self.installed,
                "healthy": healthy,
                "error_rate": 0.0 if healthy else 0.5,
                "p99_ms": 12.0,
            },
        )
        assert response.status_code == 200, response.text

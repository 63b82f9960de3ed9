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
        long_poll_recheck=0.05,
    )
    plane = build_control_plane(settings)
    http = TestClient(create_control_app(settings, plane=plane), base_url="http://control")
    admin = read_secret_file(settings.admin_token_path)
    return Fleet(plane, http, admin, clock, journal, store, settings)

"""The heartbeat fast lane answers exactly as the full route does, hands over everything it
cannot finish (refusals audited), and buffered heartbeats survive a failed flush."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.types import ASGIApp, Receive, Scope, Send

from edgeloop.fleet import db
from edgeloop.fleet.heartbeat_lane import MAX_BODY, HeartbeatLane
from edgeloop.testing.fleet import Fleet, SimAgent

BEAT = {"loaded": {"detector": "1"}, "healthy": True, "error_rate": 0.001, "p99_ms": 9.5}


class CountingApp:
    """Wraps the app behind the lane and counts the requests the lane handed over."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture
def lane_fleet(fleet: Fleet) -> Iterator[tuple[Fleet, CountingApp]]:
    """A control plane with its served defaults: buffered heartbeats and a token cache."""
    fleet.settings.heartbeat_flush_interval = 0.2
    fleet.plane.auth.cache_seconds = 30
    fleet.call("GET", "/healthz", None)  # builds the middleware stack
    layer: Any = fleet.http.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, HeartbeatLane):
        layer = layer.app
    behind = CountingApp(layer.app)
    layer.app = behind
    yield fleet, behind


def _audited(fleet: Fleet, path: str) -> list[int]:
    with fleet.plane.engine.connect() as conn:
        rows = conn.execute(sa.select(db.audit.c.status).where(db.audit.c.path == path))
        return [r.status for r in rows]


def test_a_cached_agent_heartbeat_is_answered_by_the_lane_and_written_at_flush(
    lane_fleet: tuple[Fleet, CountingApp],
) -> None:
    fleet, behind = lane_fleet
    agent = SimAgent(fleet, "edge-a")
    fleet.client(fleet.admin).deploy("vision", "detector", "1", "")
    url = "/api/v1/sites/edge-a/heartbeat"
    first = fleet.call("POST", url, agent.token, json=BEAT)  # token and ETag not yet in memory
    handed_over = behind.calls
    second = fleet.call("POST", url, agent.token, json={**BEAT, "backlog": 4})
    assert behind.calls == handed_over, "the second heartbeat was answered by the lane"
    assert first.status_code == second.status_code == 200
    assert second.headers["content-type"] == "application/json"
    assert second.json() == first.json()
    desired = fleet.call("GET", "/api/v1/sites/edge-a", fleet.admin).json()["desired_etag"]
    assert second.json() == {"desired_etag": desired}
    assert fleet.plane.service.flush_heartbeats() == 1
    site = fleet.call("GET", "/api/v1/sites/edge-a", fleet.admin).json()
    assert site["backlog"] == 4
    assert site["last_seen"] == fleet.clock.now
    assert _audited(fleet, url) == [], "successful heartbeats are telemetry"


BODIES: list[Any] = [
    BEAT,
    {},
    {"loaded": {"m": "2"}, "healthy": False, "quality": 0.9, "message": "slow"},
    {"healthy": "true", "backlog": 1.0},
    {"error_rate": 7},
    {"backlog": 1.5},
    {"backlog": 2**64},
    {"quality": float("nan")},
    {"message": "\ud800"},
    {"loaded": {"\udc00": "1"}},
    {"loaded": {"m": 1}},
    {"loaded": {"m": "1"}, "unknown": 1},
    {"message": "x" * 2001},
    [],
    "not an object",
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_lane_and_the_full_route_agree_on_every_body(
    lane_fleet: tuple[Fleet, CountingApp], body: Any
) -> None:
    fleet, behind = lane_fleet
    agent = SimAgent(fleet, "edge-a")
    url = "/api/v1/sites/edge-a/heartbeat"
    fleet.call("POST", url, agent.token, json=BEAT)  # token and ETag now in memory
    fleet.plane.service.flush_heartbeats()
    service = fleet.plane.service
    raw = json.dumps(body).encode()  # NaN as the bare token Python's json module writes
    headers = {"Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"}
    calls = behind.calls
    by_lane = fleet.http.post(url, content=raw, headers=headers)
    lane_took_it = behind.calls == calls
    lane_queued = dict(service._pending)
    service._pending.clear()
    fleet.plane.auth.forget()
    fleet.plane.auth.cache_seconds = 0  # no cached token: the full route answers
    calls = behind.calls
    by_route = fleet.http.post(url, content=raw, headers=headers)
    assert behind.calls == calls + 1
    assert by_lane.status_code == by_route.status_code
    assert by_lane.json() == by_route.json()
    assert lane_queued == dict(service._pending)
    assert lane_took_it == (by_route.status_code == 200)
    if by_route.status_code != 200:
        assert "error" in by_route.json()
        assert _audited(fleet, url) == [422, 422], "refusals are audited either way"


def test_refused_heartbeats_go_to_the_audited_app(lane_fleet: tuple[Fleet, CountingApp]) -> None:
    fleet, behind = lane_fleet
    a = SimAgent(fleet, "edge-a")
    SimAgent(fleet, "edge-b")
    url_a, url_b = "/api/v1/sites/edge-a/heartbeat", "/api/v1/sites/edge-b/heartbeat"
    assert fleet.call("POST", url_a, a.token, json=BEAT).status_code == 200  # now cached
    viewer = fleet.token("viewer")
    assert fleet.call("GET", "/api/v1/whoami", viewer).status_code == 200  # now cached
    calls = behind.calls
    assert fleet.call("POST", url_b, a.token, json=BEAT).status_code == 403  # another site
    assert fleet.call("POST", url_a, "elt_nobody", json=BEAT).status_code == 401
    assert fleet.call("POST", url_a, None, json=BEAT).status_code == 401
    assert fleet.call("POST", url_a, viewer, json=BEAT).status_code == 403
    text = fleet.http.post(
        url_a,
        content=b'{"healthy": true}',
        headers={"Authorization": f"Bearer {a.token}", "Content-Type": "text/plain"},
    )
    assert text.status_code == 422
    big = fleet.call("POST", url_a, a.token, json={**BEAT, "message": "x" * (MAX_BODY + 1)})
    assert big.status_code == 422
    assert behind.calls == calls + 6
    assert _audited(fleet, url_b) == [403]
    assert sorted(_audited(fleet, url_a)) == [401, 401, 403, 422, 422]
    # A revoked token stops at once, although the lane had it cached.
    admin = fleet.client(fleet.admin)
    agent_token = next(t for t in admin.tokens() if t["site"] == "edge-a" and t["role"] == "agent")
    admin.revoke_token(agent_token["id"])
    assert fleet.call("POST", url_a, a.token, json=BEAT).status_code == 401


def test_a_failed_flush_keeps_the_heartbeats_for_the_next_one(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    fleet.settings.heartbeat_flush_interval = 0.2
    agents = [SimAgent(fleet, f"edge-{i}") for i in range(3)]
    service = fleet.plane.service
    for agent in agents:
        url = f"/api/v1/sites/{agent.site}/heartbeat"
        assert fleet.call("POST", url, agent.token, json=BEAT).status_code == 200
    with fleet.plane.engine.begin() as conn:  # the database fails under the flush
        conn.execute(sa.text("ALTER TABLE sites RENAME TO sites_away"))
    with pytest.raises(sa.exc.OperationalError):
        service.flush_heartbeats()
    newer = {**BEAT, "loaded": {"detector": "2"}}
    url = f"/api/v1/sites/{agents[0].site}/heartbeat"
    assert fleet.call("POST", url, agents[0].token, json=newer).status_code == 200
    with fleet.plane.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE sites_away RENAME TO sites"))
    assert service.flush_heartbeats() == 3
    loaded = {
        a.site: fleet.call("GET", f"/api/v1/sites/{a.site}", fleet.admin).json()["loaded"]
        for a in agents
    }
    assert loaded == {
        "edge-0": {"detector": "2"},
        "edge-1": BEAT["loaded"],
        "edge-2": BEAT["loaded"],
    }

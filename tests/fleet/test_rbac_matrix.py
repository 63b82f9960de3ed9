"""Every control-plane route against every role: only what POLICY allows, 401 without or with a
bad, expired or revoked token, 403 otherwise; agent tokens reach only their own site."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from edgeloop.fleet.app import app_routes
from edgeloop.model.rbac import OPEN_ROUTES, POLICY, Role, RoutePolicy
from edgeloop.testing.fleet import Fleet, make_fleet

OWN_SITE = "edge-a"
OTHER_SITE = "edge-b"

BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/projects"): {"name": "other-project"},
    ("POST", "/api/v1/tokens"): {"name": "t", "role": "viewer"},
    ("POST", "/api/v1/join-tokens"): {"site": "edge-new", "labels": {}},
    ("PUT", "/api/v1/sites/{site}/labels"): {"labels": {"region": "eu"}},
    ("POST", "/api/v1/sites/{site}/heartbeat"): {"loaded": {}, "healthy": True},
    ("POST", "/api/v1/sites/{site}/reports"): {"model": "m", "version": "1", "outcome": "applied"},
    ("PUT", "/api/v1/deployments/{name}"): {"model": "m", "version": "1", "selector": ""},
    ("POST", "/api/v1/rollouts"): {"deployment": "nope", "version": "2"},
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def matrix(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Fleet, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("matrix")
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_server").create_database()
    else:
        url = f"sqlite:///{tmp / 'fleet.db'}"
    fleet = make_fleet(tmp, url)
    tokens = {role: fleet.token(role) for role in ("admin", "operator", "scientist", "viewer")}
    tokens["agent"] = fleet.join(OWN_SITE)
    tokens["other-agent"] = fleet.join(OTHER_SITE)
    tokens["join"] = fleet.client(fleet.admin).join_token("edge-c", {})["join_token"]
    tokens["expired"] = fleet.token("admin", "soon-gone", expires_in=10)
    revoked = fleet.client(fleet.admin).create_token("revoked", "admin", None)
    fleet.client(fleet.admin).revoke_token(revoked["id"])
    tokens["revoked"] = revoked["token"]
    fleet.clock.advance(11)
    yield fleet, tokens
    fleet.http.close()
    fleet.plane.engine.dispose()


def _url(policy: RoutePolicy, site: str) -> str:
    if policy.key == ("DELETE", "/api/v1/sites/{site}"):
        site = "edge-z"  # removing the agents' own site would revoke their tokens mid-matrix
    path = policy.path.replace("{site}", site)
    path = path.replace("{token_id}", "tok_doesnotexist").replace("{name}", "dep-x")
    return re.sub(r"\{rollout_id\}", "ro_doesnotexist", path)


def _call(fleet: Fleet, policy: RoutePolicy, token: str | None, site: str = OWN_SITE) -> int:
    body = BODIES.get(policy.key)
    kwargs = {"json": body} if body is not None else {}
    return int(fleet.call(policy.method, _url(policy, site), token, **kwargs).status_code)


ROLES = ["admin", "operator", "scientist", "viewer", "agent", "join"]
CASES = [
    pytest.param(p, role, id=f"{p.method} {p.path} as {role}")
    for p in POLICY
    for role in ROLES
    if not (p.path.endswith("/join") and role == "join")  # consumes the token: tested below
]


@pytest.mark.parametrize(("policy", "role"), CASES)
def test_route_allows_exactly_the_policy_roles(
    matrix: tuple[Fleet, dict[str, str]], policy: RoutePolicy, role: str
) -> None:
    fleet, tokens = matrix
    status = _call(fleet, policy, tokens[role])
    if Role(role) in policy.roles:
        assert status not in (401, 403), f"{role} was refused a route the policy gives it"
    else:
        assert status == 403, f"{role} got {status}, expected 403"


@pytest.mark.parametrize("policy", POLICY, ids=lambda p: f"{p.method} {p.path}")
@pytest.mark.parametrize("bad", ["none", "garbage", "expired", "revoked", "basic"])
def test_route_refuses_missing_bad_expired_and_revoked_tokens(
    matrix: tuple[Fleet, dict[str, str]], policy: RoutePolicy, bad: str
) -> None:
    fleet, tokens = matrix
    if bad == "basic":
        response = fleet.http.request(
            policy.method, _url(policy, OWN_SITE), headers={"Authorization": "Basic YWRtaW46eA=="}
        )
        status = response.status_code
    else:
        token = {"none": None, "garbage": "elt_not-a-real-token"}.get(bad, tokens.get(bad))
        status = _call(fleet, policy, token)
    assert status == 401
    if bad == "none":
        response = fleet.call(policy.method, _url(policy, OWN_SITE), None)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "error" in response.json()


SITE_ROUTES = [p for p in POLICY if p.site_scoped and Role.AGENT in p.roles]


@pytest.mark.parametrize("policy", SITE_ROUTES, ids=lambda p: f"{p.method} {p.path}")
def test_agent_token_reaches_only_its_own_site(
    matrix: tuple[Fleet, dict[str, str]], policy: RoutePolicy
) -> None:
    fleet, tokens = matrix
    assert _call(fleet, policy, tokens["agent"], OWN_SITE) not in (401, 403)
    assert _call(fleet, policy, tokens["agent"], OTHER_SITE) == 403
    assert _call(fleet, policy, tokens["other-agent"], OWN_SITE) == 403
    assert _call(fleet, policy, tokens["agent"], "edge-unknown") == 403


def test_join_token_is_one_time_and_scoped(matrix: tuple[Fleet, dict[str, str]]) -> None:
    fleet, _ = matrix
    join = fleet.client(fleet.admin).join_token("edge-once", {"ring": "canary"})["join_token"]
    first = fleet.call("POST", "/api/v1/join", join)
    assert first.status_code == 201
    assert first.json()["site"] == "edge-once"
    assert fleet.call("POST", "/api/v1/join", join).status_code == 401
    agent = first.json()["token"]
    assert fleet.call("GET", "/api/v1/sites/edge-once", agent).json()["labels"] == {
        "ring": "canary"
    }


def test_expired_join_token_is_refused(matrix: tuple[Fleet, dict[str, str]]) -> None:
    fleet, _ = matrix
    join = fleet.client(fleet.admin).join_token("edge-late", {}, expires_in=5)["join_token"]
    fleet.clock.advance(6)
    assert fleet.call("POST", "/api/v1/join", join).status_code == 401


def test_rejoin_revokes_the_previous_agent_token(matrix: tuple[Fleet, dict[str, str]]) -> None:
    fleet, _ = matrix
    first = fleet.join("edge-again")
    second = fleet.join("edge-again")
    heartbeat = {"loaded": {}, "healthy": True}
    url = "/api/v1/sites/edge-again/heartbeat"
    assert fleet.call("POST", url, second, json=heartbeat).status_code == 200
    assert fleet.call("POST", url, first, json=heartbeat).status_code == 401


def test_policy_names_every_route_and_only_health_is_open(
    matrix: tuple[Fleet, dict[str, str]],
) -> None:
    fleet, _ = matrix
    app = fleet.http.app
    served = app_routes(app)  # type: ignore[arg-type]
    assert served - OPEN_ROUTES == {p.key for p in POLICY}
    for method, path in OPEN_ROUTES:
        assert fleet.call(method, path, None).status_code == 200
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert fleet.call("GET", path, None).status_code in (401, 404)


def test_openapi_is_published_to_readers(matrix: tuple[Fleet, dict[str, str]]) -> None:
    fleet, tokens = matrix
    doc = fleet.call("GET", "/api/v1/openapi.json", tokens["viewer"]).json()
    assert "/api/v1/sites/{site}/desired" in doc["paths"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_tokens_are_stored_only_as_hashes(matrix: tuple[Fleet, dict[str, str]]) -> None:
    fleet, tokens = matrix
    import sqlalchemy as sa

    from edgeloop.fleet import db

    with fleet.plane.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.select(db.tokens))]
    flat = repr(stored)
    for secret in tokens.values():
        assert secret not in flat

"""The serving admin API (repository index/load/unload, status) of a real server on loopback
against every credential: only the server's own token (held by the site's agent) opens it;
every control-plane token of every role, an agent's or join token, a bad, expired or revoked
token, another server's token, a non-Bearer scheme and no token get 401."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeloop.model.rbac import SERVING_POLICY, RoutePolicy
from edgeloop.serving.config import ServeConfig
from edgeloop.serving.openapi import openapi_document
from edgeloop.serving.repository import ensure_token
from edgeloop.testing.fleet import make_fleet
from edgeloop.testing.serving import ThreadServer, make_package, serving


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ThreadServer, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("serving-matrix")
    make_package(tmp / "repo", "demo", 1)
    fleet = make_fleet(tmp, f"sqlite:///{tmp / 'fleet.db'}")
    creds: dict[str, Any] = {
        role: fleet.token(role) for role in ("admin", "operator", "scientist", "viewer")
    }
    creds["agent"] = fleet.join("edge-a")
    creds["join"] = fleet.client(fleet.admin).join_token("edge-b", {})["join_token"]
    creds["expired"] = fleet.token("admin", "soon-gone", expires_in=10)
    revoked = fleet.client(fleet.admin).create_token("revoked", "admin", None)
    fleet.client(fleet.admin).revoke_token(revoked["id"])
    creds["revoked"] = revoked["token"]
    fleet.clock.advance(11)
    creds["other-server"], _ = ensure_token(tmp / "other" / "serving-token")
    creds["garbage"] = "not-a-token-at-all-0123456789"
    creds["none"] = None
    config = ServeConfig(repository=tmp / "repo", state_dir=tmp / "state", server="uvicorn")
    with serving(config) as server:
        yield server, creds
    fleet.http.close()
    fleet.plane.engine.dispose()
    fleet.journal.close()


def _call(server: ThreadServer, policy: RoutePolicy, headers: dict[str, str]) -> int:
    path = policy.path.replace("{model_name}", "demo")
    body = {"parameters": {"version": 1}} if path.endswith("/load") else None
    response = httpx.request(
        policy.method, f"{server.url}{path}", headers=headers, json=body, timeout=30
    )
    return response.status_code


CREDENTIALS = [
    "admin", "operator", "scientist", "viewer", "agent", "join", "expired", "revoked",
    "other-server", "garbage", "none",
]  # fmt: skip


@pytest.mark.parametrize("policy", SERVING_POLICY, ids=lambda p: f"{p.method} {p.path}")
@pytest.mark.parametrize("credential", CREDENTIALS)
def test_every_other_credential_is_refused(
    setup: tuple[ThreadServer, dict[str, Any]], policy: RoutePolicy, credential: str
) -> None:
    server, creds = setup
    token = creds[credential]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    assert _call(server, policy, headers) == 401


@pytest.mark.parametrize("policy", SERVING_POLICY, ids=lambda p: f"{p.method} {p.path}")
def test_basic_auth_with_the_right_secret_is_refused(
    setup: tuple[ThreadServer, dict[str, Any]], policy: RoutePolicy
) -> None:
    server, _ = setup
    assert _call(server, policy, {"Authorization": f"Basic {server.token}"}) == 401


@pytest.mark.parametrize("policy", SERVING_POLICY, ids=lambda p: f"{p.method} {p.path}")
def test_the_servers_own_token_is_let_in(
    setup: tuple[ThreadServer, dict[str, Any]], policy: RoutePolicy
) -> None:
    server, _ = setup
    status = _call(server, policy, server.admin())
    assert status == 200, f"{policy.method} {policy.path} answered {status}"
    if policy.path.endswith("/unload"):  # put the model back for the other cases
        assert _call(server, SERVING_POLICY[1], server.admin()) == 200


def test_the_policy_names_every_admin_route_and_nothing_else_needs_a_token() -> None:
    doc = openapi_document("test")
    secured = {
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if op.get("security")
    }
    assert secured == {p.key for p in SERVING_POLICY}


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "serving-token"
    ensure_token(path)
    path.chmod(0o644)
    from edgeloop.errors import ConfigError

    with pytest.raises(ConfigError, match="readable by others"):
        ensure_token(path)

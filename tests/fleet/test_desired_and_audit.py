"""Desired state (long-poll with ETag, signed envelopes in the store, tampering), heartbeats,
the first admin token, and the audit log."""

from __future__ import annotations

import base64
import stat
import threading
import time
from pathlib import Path

import orjson
import pytest

from edgeloop.errors import SignatureInvalid
from edgeloop.fleet.auth import read_secret_file
from edgeloop.fleet.signing import desired_key, generate_key, public_pem, verify_envelope
from edgeloop.testing.fleet import Fleet, SimAgent, make_fleet


def test_first_start_mints_one_admin_token_in_a_private_file(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'f.db'}")
    path = fleet.settings.admin_token_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fleet.call("GET", "/api/v1/whoami", fleet.admin).json()["role"] == "admin"
    again = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'f.db'}")
    assert not again.plane.minted_admin
    assert again.admin == fleet.admin
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        read_secret_file(path)


def test_desired_state_long_poll_and_etag(fleet: Fleet) -> None:
    agent = SimAgent(fleet, "edge-a", {"region": "eu"})
    url = "/api/v1/sites/edge-a/desired"
    empty = fleet.call("GET", url, agent.token)
    assert empty.json()["document"]["models"] == []  # nothing selects it yet
    fleet.client(fleet.admin).deploy("vision", "detector", "1", "region=eu")
    first = fleet.call("GET", url, agent.token)
    assert first.status_code == 200
    etag = first.headers["etag"]
    document = first.json()["document"]
    assert document["models"] == [
        {
            "model": "detector",
            "version": "1",
            "deployment": "vision",
            "rollout": None,
            "rollback": False,
        }
    ]
    headers = {"Authorization": f"Bearer {agent.token}", "If-None-Match": etag}
    assert fleet.http.get(url, headers=headers).status_code == 304
    assert fleet.http.get(url + "?wait=0.2", headers=headers).status_code == 304

    def change_soon() -> None:
        time.sleep(0.3)
        fleet.client(fleet.admin).deploy("vision", "detector", "2", "region=eu")

    thread = threading.Thread(target=change_soon)
    thread.start()
    waited = fleet.http.get(url + "?wait=30", headers=headers)
    thread.join()
    assert waited.status_code == 200
    assert waited.json()["document"]["models"][0]["version"] == "2"
    assert waited.json()["generation"] == 3
    assert waited.headers["etag"] != etag


def test_label_change_moves_a_site_in_and_out_of_a_deployment(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    agent = SimAgent(fleet, "edge-a", {"region": "us"})
    fleet.client(fleet.admin).deploy("vision", "detector", "1", "region=eu")
    agent.step()
    assert agent.installed == {}
    fleet.call("PUT", "/api/v1/sites/edge-a/labels", fleet.admin, json={"labels": {"region": "eu"}})
    agent.step()
    assert agent.installed == {"detector": "1"}
    fleet.call("PUT", "/api/v1/sites/edge-a/labels", fleet.admin, json={"labels": {}})
    agent.step()
    assert agent.installed == {}


def test_signed_desired_state_is_published_to_the_store(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    agent = SimAgent(fleet, "edge-a")
    fleet.client(fleet.admin).deploy("vision", "detector", "7", "")
    raw = fleet.store.get(desired_key("edge-a")).read()
    document = verify_envelope(raw, agent.signing_key)
    assert document["site"] == "edge-a"
    assert document["models"][0]["version"] == "7"
    api_doc = fleet.call("GET", "/api/v1/sites/edge-a/desired", agent.token).json()["document"]
    assert api_doc == document


def _tamper_payload(raw: bytes, edit: object) -> bytes:
    envelope = orjson.loads(raw)
    payload = orjson.loads(base64.b64decode(envelope["payload"]))
    edit(payload)  # type: ignore[operator]
    envelope["payload"] = base64.b64encode(orjson.dumps(payload)).decode()
    return orjson.dumps(envelope)


@pytest.mark.parametrize(
    "tamper",
    [
        "flipped-byte",
        "downgrade",
        "other-site",
        "extra-field",
        "bad-base64",
        "wrong-signer",
        "not-json",
        "missing-signature",
    ],
)
def test_tampered_desired_state_is_rejected(
    sqlite_fleet: Fleet, tamper: str, tmp_path: Path
) -> None:
    fleet = sqlite_fleet
    agent = SimAgent(fleet, "edge-a")
    fleet.client(fleet.admin).deploy("vision", "detector", "7", "")
    raw = fleet.store.get(desired_key("edge-a")).read()
    key = agent.signing_key
    if tamper == "flipped-byte":
        envelope = orjson.loads(raw)
        payload = bytearray(base64.b64decode(envelope["payload"]))
        payload[len(payload) // 2] ^= 0x01
        envelope["payload"] = base64.b64encode(bytes(payload)).decode()
        raw = orjson.dumps(envelope)
    elif tamper == "downgrade":
        raw = _tamper_payload(raw, lambda p: p["models"][0].update(version="1", rollback=True))
    elif tamper == "other-site":
        raw = _tamper_payload(raw, lambda p: p.update(site="edge-b"))
    elif tamper == "extra-field":
        raw = _tamper_payload(raw, lambda p: p.update(extra="x"))
    elif tamper == "bad-base64":
        raw = raw.replace(b'"signature":"', b'"signature":"!!')
    elif tamper == "wrong-signer":
        key = public_pem(generate_key(tmp_path / "other.pem"))
    elif tamper == "not-json":
        raw = b"\x00" + raw
    elif tamper == "missing-signature":
        envelope = orjson.loads(raw)
        del envelope["signature"]
        raw = orjson.dumps(envelope)
    with pytest.raises(SignatureInvalid):
        verify_envelope(raw, key)


def test_heartbeat_status_is_visible_and_transitions_are_journaled(fleet: Fleet) -> None:
    agent = SimAgent(fleet, "edge-a")
    body = {
        "loaded": {"m": "1"},
        "healthy": True,
        "backlog": 12,
        "capture_drops": 3,
        "error_rate": 0.001,
        "p99_ms": 8.5,
    }
    url = "/api/v1/sites/edge-a/heartbeat"
    assert fleet.call("POST", url, agent.token, json=body).status_code == 200
    fleet.call("POST", url, agent.token, json={**body, "healthy": False})
    fleet.call("POST", url, agent.token, json=body)
    site = fleet.call("GET", "/api/v1/sites/edge-a", fleet.admin).json()
    assert site["loaded"] == {"m": "1"}
    assert site["backlog"] == 12
    assert site["capture_drops"] == 3
    assert site["healthy"] is True
    assert site["last_seen"] == fleet.clock.now
    types = [e.event.type for e in fleet.journal.read(limit=1000)]
    assert types.count("site.unhealthy") == 1
    assert types.count("site.healthy") == 1
    bad = fleet.call("POST", url, agent.token, json={"healthy": True, "error_rate": 7})
    assert bad.status_code == 422
    assert "error" in bad.json()


def test_every_mutating_call_is_audited_with_who_what_and_where(fleet: Fleet) -> None:
    admin = fleet.client(fleet.admin)
    viewer = fleet.token("viewer", "vera")
    agent = SimAgent(fleet, "edge-a")
    admin.deploy("vision", "detector", "1", "")
    fleet.call("PUT", "/api/v1/deployments/vision", viewer, json={"model": "x", "version": "2"})
    fleet.call("POST", "/api/v1/tokens", None, json={"name": "x", "role": "admin"})
    agent.heartbeat()
    admin.sites()
    entries = admin.audit(limit=1000)
    paths = [(e["method"], e["path"], e["status"], e["actor"]) for e in entries]
    assert ("PUT", "/api/v1/deployments/vision", 200, "bootstrap-admin") in paths
    assert ("PUT", "/api/v1/deployments/vision", 403, "vera") in paths
    assert not any(p[1].endswith("/heartbeat") for p in paths), "heartbeats are telemetry"
    assert not any(p[0] == "GET" for p in paths)
    deploy = next(e for e in entries if e["status"] == 200 and e["path"].endswith("/vision"))
    assert deploy["detail"]["version"] == "1"
    assert deploy["client"] == "testclient"
    assert deploy["role"] == "admin"
    assert deploy["time"] == fleet.clock.now
    # Refused calls without a token are audited too, under no project: admins of a project
    # see their own project's trail.
    with fleet.plane.engine.connect() as conn:
        import sqlalchemy as sa

        from edgeloop.fleet import db

        anonymous = conn.execute(
            sa.select(db.audit).where(db.audit.c.project.is_(None), db.audit.c.status == 401)
        ).all()
    assert anonymous


def test_projects_are_isolated(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    SimAgent(fleet, "edge-a")
    created = fleet.call("POST", "/api/v1/projects", fleet.admin, json={"name": "beta"}).json()
    beta = created["admin_token"]
    assert fleet.call("GET", "/api/v1/sites", beta).json() == []
    assert fleet.call("GET", "/api/v1/sites/edge-a", beta).status_code == 404
    tokens = fleet.call("GET", "/api/v1/tokens", beta).json()
    assert [t["project"] for t in tokens] == ["beta"]


def test_tokens_create_list_revoke(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    admin = fleet.client(fleet.admin)
    made = admin.create_token("ops", "operator", 3600)
    assert made["token"].startswith("elt_")
    listed = {t["id"]: t for t in admin.tokens()}
    assert listed[made["id"]]["role"] == "operator"
    assert "hash" not in listed[made["id"]]
    assert fleet.call("GET", "/api/v1/whoami", made["token"]).status_code == 200
    admin.revoke_token(made["id"])
    assert fleet.call("GET", "/api/v1/whoami", made["token"]).status_code == 401
    bad = fleet.call("POST", "/api/v1/tokens", fleet.admin, json={"name": "x", "role": "agent"})
    assert bad.status_code == 400
    assert "by joining" in bad.json()["error"]


def test_buffered_heartbeats_are_written_in_one_batch(fleet: Fleet) -> None:
    fleet.settings.heartbeat_flush_interval = 0.2  # the default of a served control plane
    agents = [SimAgent(fleet, f"edge-{i}") for i in range(3)]
    fleet.client(fleet.admin).deploy("vision", "detector", "1", "")
    etags = set()
    for agent in agents:
        response = fleet.call(
            "POST",
            f"/api/v1/sites/{agent.site}/heartbeat",
            agent.token,
            json={"loaded": {"detector": "1"}, "healthy": True},
        )
        etags.add(response.json()["desired_etag"])
    assert None not in etags
    site = fleet.call("GET", "/api/v1/sites/edge-0", fleet.admin).json()
    assert site["last_seen"] is None, "not written before the flush"
    assert fleet.plane.service.flush_heartbeats() == 3
    for agent in agents:
        seen = fleet.call("GET", f"/api/v1/sites/{agent.site}", fleet.admin).json()
        assert seen["loaded"] == {"detector": "1"}
        assert seen["desired_etag"] in etags
    assert fleet.plane.service.flush_heartbeats() == 0


def test_revocations_apply_at_once_despite_the_token_cache(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    fleet.plane.auth.cache_seconds = 30  # the served default
    old = fleet.join("edge-a")
    url = "/api/v1/sites/edge-a"
    assert fleet.call("GET", url, old).status_code == 200  # now cached
    new = fleet.join("edge-a")
    assert fleet.call("GET", url, old).status_code == 401
    assert fleet.call("GET", url, new).status_code == 200
    fleet.call("DELETE", url, fleet.admin)
    assert fleet.call("GET", url, new).status_code == 401
    person = fleet.client(fleet.admin).create_token("p", "viewer", None)
    assert fleet.call("GET", "/api/v1/sites", person["token"]).status_code == 200
    fleet.client(fleet.admin).revoke_token(person["id"])
    assert fleet.call("GET", "/api/v1/sites", person["token"]).status_code == 401

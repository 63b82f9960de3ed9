"""Deployments that follow a registry alias: resolved at deploy time, refused without a
registry, and each move of the alias starts one rollout (never one for a version tried)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.errors import FleetError
from edgeloop.fleet.signing import generate_key, public_pem, verify_envelope
from edgeloop.model.desired import canonical_json
from edgeloop.testing.fleet import Fleet, SimAgent, make_fleet


def test_alias_needs_a_registry(sqlite_fleet: Fleet) -> None:
    client = sqlite_fleet.client(sqlite_fleet.admin)
    with pytest.raises(FleetError, match="no model registry"):
        client.deploy("vision", "m", None, "", alias="champion")


def test_alias_moves_start_one_rollout_each(tmp_path: Path) -> None:
    aliases = {"champion": "1"}
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'fleet.db'}")
    fleet.plane.service.resolve_alias = lambda _model, alias: aliases.get(alias)
    try:
        client = fleet.client(fleet.admin)
        fleet.join("edge-a")
        client.deploy("vision", "m", None, "", alias="champion", waves="100")
        assert client.deployments()[0]["version"] == "1"
        with pytest.raises(FleetError, match="no alias 'canary'"):
            client.deploy("other", "m", None, "", alias="canary")
        service = fleet.plane.service
        assert service.tick() == []
        aliases["champion"] = "2"
        notes = service.tick()
        assert any("rollout" in n for n in notes)
        assert [r["to_version"] for r in client.rollouts()] == ["2"]
        service.tick()
        assert len(client.rollouts()) == 1  # running: not started twice
        client.act(client.rollouts()[0]["id"], "rollback", "bad")
        service.tick()
        assert len(client.rollouts()) == 1  # rolled back: version 2 is not tried by itself
        aliases["champion"] = "3"
        fleet.clock.advance(1)
        service.tick()
        assert [r["to_version"] for r in client.rollouts()] == ["3", "2"]
    finally:
        fleet.http.close()
        fleet.plane.engine.dispose()
        fleet.journal.close()


def test_an_alias_moved_back_rolls_the_sites_back_to_the_older_version(tmp_path: Path) -> None:
    aliases = {"champion": "1"}
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'fleet.db'}")
    fleet.plane.service.resolve_alias = lambda _model, alias: aliases.get(alias)
    try:
        client = fleet.client(fleet.admin)
        agent = SimAgent(fleet, "edge-a")
        client.deploy("vision", "m", None, "", alias="champion", waves="100")

        def settle() -> None:
            for _ in range(5):
                fleet.plane.service.tick()
                agent.step()
                fleet.clock.advance(120)

        settle()
        for version in ("2", "3"):
            aliases["champion"] = version
            settle()
            assert agent.installed == {"m": version}
        # A scientist moves champion back to version 2, whose rollout completed before.
        aliases["champion"] = "2"
        settle()
        assert agent.installed == {"m": "2"}
        assert agent.applied == [("m", "1"), ("m", "2"), ("m", "3"), ("m", "2")]
        assert [(r["to_version"], r["state"]) for r in client.rollouts()] == [
            ("2", "completed"),
            ("3", "completed"),
            ("2", "completed"),
        ]
    finally:
        fleet.http.close()
        fleet.plane.engine.dispose()
        fleet.journal.close()


def test_a_new_signing_key_re_signs_stored_desired_state(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'fleet.db'}")
    agent = fleet.join("edge-a")
    fleet.client(fleet.admin).deploy("vision", "m", "1", "")
    fleet.http.close()
    fleet.plane.engine.dispose()
    fleet.journal.close()
    # The key is replaced (e.g. the workspace's key now signs desired state too).
    fleet.settings.signing_key_path.unlink()
    public = public_pem(generate_key(fleet.settings.signing_key_path))
    again = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        body = again.call("GET", "/api/v1/sites/edge-a/desired", agent).json()
        assert verify_envelope(canonical_json(body["envelope"]), public)["site"] == "edge-a"
    finally:
        again.http.close()
        again.plane.engine.dispose()
        again.journal.close()

"""Rollouts with simulated agents in-process: waves and gates, halt and automatic rollback,
operator actions, a control-plane restart mid-rollout, and the journal's rollout events."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.testing.fleet import Fleet, SimAgent, make_fleet

GATE = {"min_healthy_seconds": 30, "max_error_rate": 0.05, "wave_timeout_seconds": 600}


def sites(fleet: Fleet, n: int, labels: dict[str, str] | None = None) -> list[SimAgent]:
    return [SimAgent(fleet, f"edge-{i:03d}", labels or {"tier": "store"}) for i in range(n)]


def run(fleet: Fleet, agents: list[SimAgent], rounds: int = 1) -> None:
    for _ in range(rounds):
        for agent in agents:
            agent.step()


def deploy_v1(fleet: Fleet, agents: list[SimAgent]) -> None:
    fleet.client(fleet.admin).deploy("vision", "detector", "1", "tier=store")
    run(fleet, agents)
    assert all(a.installed == {"detector": "1"} for a in agents)


def versions(agents: list[SimAgent]) -> dict[str, int]:
    out: dict[str, int] = {}
    for agent in agents:
        v = agent.installed.get("detector", "-")
        out[v] = out.get(v, 0) + 1
    return out


def drive(fleet: Fleet, agents: list[SimAgent], rollout_id: str, *, hold: float = 31) -> str:
    """Step agents and the gate, moving the clock past each hold, until the rollout ends."""
    client = fleet.client(fleet.admin)
    for _ in range(20):
        run(fleet, agents)
        fleet.plane.service.tick()
        state = client.rollout(rollout_id)["state"]
        if state != "running":
            run(fleet, agents)
            return str(state)
        fleet.clock.advance(hold)
    raise AssertionError("rollout did not finish")


def test_three_waves_advance_only_after_the_gate_holds(fleet: Fleet) -> None:
    agents = sites(fleet, 20)
    deploy_v1(fleet, agents)
    client = fleet.client(fleet.admin)
    rollout = client.start_rollout("vision", "2", "5,25,100", GATE)
    assert [len(w["sites"]) for w in rollout["waves"]] == [1, 4, 15]

    run(fleet, agents)
    assert versions(agents) == {"1": 19, "2": 1}
    fleet.plane.service.tick()  # healthy, but not yet for 30 s: the gate waits
    assert client.rollout(rollout["id"])["current_wave"] == 0
    fleet.clock.advance(31)
    run(fleet, agents)
    fleet.plane.service.tick()
    assert client.rollout(rollout["id"])["current_wave"] == 1
    run(fleet, agents)
    assert versions(agents) == {"1": 15, "2": 5}

    assert drive(fleet, agents, rollout["id"]) == "completed"
    assert versions(agents) == {"2": 20}
    assert client.deployments()[0]["version"] == "2"
    assert all(a.applied.count(("detector", "2")) == 1 for a in agents)
    types = [e.event.type for e in fleet.journal.read(limit=10_000)]
    assert types.count("rollout.wave") == 3
    assert types.count("rollout.started") == types.count("rollout.completed") == 1
    assert types.count("site.joined") == 20


def test_unhealthy_wave_halts_and_its_sites_roll_back(fleet: Fleet) -> None:
    agents = sites(fleet, 20)
    deploy_v1(fleet, agents)
    for agent in agents:
        agent.bad_versions.add("2")
    client = fleet.client(fleet.admin)
    rollout = client.start_rollout("vision", "2", "10,50,100", GATE)
    first_wave = {s["site"] for s in rollout["waves"][0]["sites"]}

    assert drive(fleet, agents, rollout["id"]) == "rolled_back"
    detail = client.rollout(rollout["id"])
    assert detail["reason"].startswith("halted: site edge-")
    assert detail["current_wave"] == 0
    assert versions(agents) == {"1": 20}
    touched = {a.site for a in agents if ("detector", "2") in a.applied}
    assert touched == first_wave, "only the first wave ever saw version 2"
    assert {s["site"] for s in detail["waves"][0]["sites"] if s["problem"]} == first_wave
    types = [e.event.type for e in fleet.journal.read(limit=10_000)]
    assert "rollout.halted" in types and "rollout.rolled_back" in types
    assert "site.unhealthy" in types


def test_a_site_that_fails_to_load_halts_the_rollout(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    agents = sites(fleet, 10)
    deploy_v1(fleet, agents)
    for agent in agents:
        agent.failing_versions.add("2")
    rollout = fleet.client(fleet.admin).start_rollout("vision", "2", "20,100", GATE)
    run(fleet, agents)
    fleet.plane.service.tick()
    detail = fleet.client(fleet.admin).rollout(rollout["id"])
    assert detail["state"] == "rolled_back"
    assert "model failed to load" in detail["reason"]
    assert versions(agents) == {"1": 10}


def test_a_site_that_never_converges_times_out_the_wave(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    agents = sites(fleet, 5)
    deploy_v1(fleet, agents)
    rollout = fleet.client(fleet.admin).start_rollout("vision", "2", "100", GATE)
    for agent in agents[:1]:
        agent.online = False
    run(fleet, agents)
    fleet.clock.advance(601)
    fleet.plane.service.tick()
    detail = fleet.client(fleet.admin).rollout(rollout["id"])
    assert detail["state"] == "rolled_back"
    assert "edge-000" in detail["reason"]


def test_pause_resume_abort_and_manual_rollback(fleet: Fleet) -> None:
    agents = sites(fleet, 10)
    deploy_v1(fleet, agents)
    client = fleet.client(fleet.admin)
    rollout = client.start_rollout("vision", "2", "20,100", {**GATE, "min_healthy_seconds": 0})
    rid = rollout["id"]
    assert client.act(rid, "pause")["state"] == "paused"
    run(fleet, agents)
    fleet.plane.service.tick()
    assert client.rollout(rid)["current_wave"] == 0, "a paused rollout does not advance"
    with pytest.raises(Exception, match="cannot pause a rollout that is paused"):
        client.act(rid, "pause")
    assert client.act(rid, "resume")["state"] == "running"
    assert drive(fleet, agents, rid) == "completed"
    with pytest.raises(Exception, match="cannot abort"):
        client.act(rid, "abort")
    # A manual rollback after completion moves every site and the deployment back.
    assert client.act(rid, "rollback", "bad quality")["state"] == "rolled_back"
    run(fleet, agents)
    assert versions(agents) == {"1": 10}
    assert client.deployments()[0]["version"] == "1"

    second = client.start_rollout("vision", "3", "50,100", GATE)
    with pytest.raises(Exception, match="in progress"):
        client.start_rollout("vision", "4", "100", GATE)
    with pytest.raises(Exception, match="in progress"):
        client.deploy("vision", "detector", "9", "tier=store")
    assert client.act(second["id"], "abort")["state"] == "aborted"


def test_version_already_deployed_and_unknown_deployment_conflict(sqlite_fleet: Fleet) -> None:
    client = sqlite_fleet.client(sqlite_fleet.admin)
    client.deploy("vision", "detector", "1", "")
    with pytest.raises(Exception, match="already runs version 1"):
        client.start_rollout("vision", "1", "100", GATE)
    with pytest.raises(Exception, match="no deployment 'nope'"):
        client.start_rollout("nope", "1", "100", GATE)


def test_waves_ordered_by_a_label(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    agents = [
        SimAgent(fleet, f"edge-{i}", {"ring": ring})
        for i, ring in enumerate(["canary", "early", "early", "late", "late", "late"])
    ]
    fleet.client(fleet.admin).deploy("vision", "detector", "1", "")
    run(fleet, agents)
    rollout = fleet.client(fleet.admin).start_rollout(
        "vision", "2", "label:ring=canary,early", GATE
    )
    assert [len(w["sites"]) for w in rollout["waves"]] == [1, 2, 3]
    assert rollout["waves"][0]["sites"][0]["site"] == "edge-0"


def test_control_plane_restart_mid_rollout_resumes(tmp_path: Path, db_url: str) -> None:
    first = make_fleet(tmp_path, db_url)
    agents = sites(first, 12)
    deploy_v1(first, agents)
    rollout = first.client(first.admin).start_rollout("vision", "2", "25,100", GATE)
    run(first, agents)
    first.http.close()
    first.plane.engine.dispose()

    # A new process over the same database, state dir and signing key; agents keep theirs.
    second = make_fleet(tmp_path, db_url, clock=first.clock)
    assert not second.plane.minted_admin, "the first admin token is minted once"
    for agent in agents:
        agent.fleet = second
    second.clock.advance(31)
    assert drive(second, agents, rollout["id"]) == "completed"
    assert versions(agents) == {"2": 12}
    assert all(a.applied.count(("detector", "2")) == 1 for a in agents), "nothing applied twice"
    second.http.close()
    second.plane.engine.dispose()


def test_agents_offline_during_a_rollout_converge_once_back(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    agents = sites(fleet, 8)
    deploy_v1(fleet, agents)
    rollout = fleet.client(fleet.admin).start_rollout(
        "vision", "2", "100", {**GATE, "wave_timeout_seconds": 3600}
    )
    for agent in agents[4:]:
        agent.online = False
    run(fleet, agents, rounds=3)
    fleet.clock.advance(31)
    fleet.plane.service.tick()
    assert fleet.client(fleet.admin).rollout(rollout["id"])["state"] == "running"
    for agent in agents[4:]:
        agent.online = True
    assert drive(fleet, agents, rollout["id"]) == "completed"
    assert all(a.applied == [("detector", "1"), ("detector", "2")] for a in agents)


def test_removed_site_in_a_wave_halts_it(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    agents = sites(fleet, 2)
    deploy_v1(fleet, agents)
    rollout = fleet.client(fleet.admin).start_rollout("vision", "2", "100", GATE)
    fleet.call("DELETE", "/api/v1/sites/edge-001", fleet.admin)
    run(fleet, agents[:1])
    fleet.plane.service.tick()
    detail = fleet.client(fleet.admin).rollout(rollout["id"])
    assert detail["state"] == "rolled_back"
    assert "removed" in detail["reason"]

"""The edge agent against a real control plane, a real replicator and a real `edgeloop serve`
child: install, verified swaps, rollouts seen through, tampering refused, runbooks run."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_harness import MODEL, SITE, World, make_world, tamper, wait_until

from edgeloop.model.rbac import Role


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = make_world(tmp_path)
    yield world
    world.close()


def _deploy_v1(world: World) -> str:
    v1 = world.register(seed=0)
    world.admin.deploy("vision", MODEL, v1, "region=eu")
    return v1


def test_agent_joins_installs_and_serves_the_desired_version(world: World) -> None:
    v1 = _deploy_v1(world)
    join = world.join_token_file()
    agent = world.agent(join_token_file=join)
    world.replicate()
    agent.start()
    assert world.serving_version() == v1
    token_file = agent.config.resolved_token_file
    assert token_file.stat().st_mode & 0o777 == 0o600
    who = world.admin.request("GET", "/whoami")
    assert who["role"] == Role.ADMIN.value
    wait_until(lambda: world.site()["loaded"] == {MODEL: v1}, step=agent.step)
    # nothing to do on later rounds: the version is loaded once
    for _ in range(3):
        agent.step()
    loads = [h for h in agent.state.history if h["kind"] == "load"]
    assert [(h["model"], h["version"]) for h in loads] == [(MODEL, v1)]


def test_rollout_moves_the_site_and_completes(world: World) -> None:
    v1 = _deploy_v1(world)
    agent = world.agent(join_token_file=world.join_token_file())
    world.replicate()
    agent.start()
    assert world.serving_version() == v1
    v2 = world.register(seed=1)
    started = world.admin.start_rollout(
        "vision", v2, "100", {"min_healthy_seconds": 0, "max_error_rate": 0.5}
    )
    world.replicate()

    def done() -> bool:
        world.replicate()
        return world.admin.rollout(started["id"])["state"] == "completed"

    wait_until(done, step=agent.step)
    assert world.serving_version() == v2
    assert sorted(os.listdir(agent.config.resolved_repository / MODEL)) == sorted({v1, v2})


@pytest.mark.parametrize(
    "how",
    [
        "flipped-byte",
        pytest.param("extra-file", marks=pytest.mark.slow),
        pytest.param("missing-file", marks=pytest.mark.slow),
        pytest.param("renamed-file", marks=pytest.mark.slow),
        pytest.param("symlink", marks=pytest.mark.slow),
    ],
)
def test_tampered_package_is_refused_site_keeps_serving_rollout_rolls_back(
    world: World, how: str
) -> None:
    v1 = _deploy_v1(world)
    agent = world.agent(join_token_file=world.join_token_file())
    world.replicate()
    agent.start()
    v2 = world.register(seed=1)
    world.replicate()
    tamper(world.edge_store.root, v2, how)
    started = world.admin.start_rollout("vision", v2, "100", {"min_healthy_seconds": 0})
    world.replicate()
    wait_until(
        lambda: world.admin.rollout(started["id"])["state"] == "rolled_back", step=agent.step
    )
    assert world.serving_version() == v1
    assert not (agent.config.resolved_repository / MODEL / v2).exists()
    assert agent.state.failed[MODEL]["version"] == v2
    assert "rejected" in agent.state.failed[MODEL]["reason"]
    reason = world.admin.rollout(started["id"])["reason"]
    assert "edge-a" in reason


def test_unhealthy_swap_rolls_back_by_itself_and_halts_the_wave(world: World) -> None:
    v1 = _deploy_v1(world)
    agent = world.agent(join_token_file=world.join_token_file())
    world.replicate()
    agent.start()
    bad = world.register(seed=2, features=5)  # loads and warms up, but no client fits it
    started = world.admin.start_rollout(
        "vision", bad, "100", {"min_healthy_seconds": 60, "max_error_rate": 0.5}
    )
    world.replicate()
    wait_until(lambda: world.serving_version() is None, step=agent.step)  # v-bad took over
    for _ in range(10):
        world.infer()  # clients now get 400s
    wait_until(
        lambda: world.admin.rollout(started["id"])["state"] == "rolled_back", step=agent.step
    )
    assert world.serving_version() == v1
    assert "error rate" in world.admin.rollout(started["id"])["reason"]
    # The halted rollout tells the site to go back to v1, which it already runs: no swap.
    for _ in range(5):
        agent.step()
    swaps = [(h["kind"], h["version"]) for h in agent.state.history]
    assert swaps == [("load", v1), ("load", bad), ("rollback", v1)]
    assert not (agent.config.resolved_repository / MODEL / bad).exists()


def test_dead_server_is_restarted_and_serves_the_same_version(world: World) -> None:
    v1 = _deploy_v1(world)
    agent = world.agent(join_token_file=world.join_token_file())
    world.replicate()
    agent.start()
    assert agent.process is not None and agent.process.process is not None
    os.kill(agent.process.process.pid, signal.SIGKILL)
    agent.process.process.wait()
    agent.step()
    assert agent.process.restarts == 1
    wait_until(lambda: world.serving_version() == v1, step=agent.step)
    assert any(h["kind"] == "restart" for h in agent.state.history)


def test_promoting_a_new_champion_moves_the_fleet_through_a_rollout(world: World) -> None:
    v1 = world.register(seed=0)
    world.registry.promote(MODEL, int(v1))
    deployed = world.admin.deploy(
        "vision",
        MODEL,
        None,
        "region=eu",
        alias="champion",
        waves="100",
        gate={"min_healthy_seconds": 0, "max_error_rate": 0.5},
    )
    assert deployed["version"] == v1
    agent = world.agent(join_token_file=world.join_token_file())
    world.replicate()
    agent.start()
    assert world.serving_version() == v1
    v2 = world.register(seed=1)
    world.registry.promote(MODEL, int(v2))

    def moved() -> bool:
        world.replicate()
        rollouts = world.admin.rollouts()
        return bool(rollouts) and rollouts[0]["state"] == "completed"

    wait_until(moved, step=agent.step)
    rollout = world.admin.rollouts()[0]
    assert (rollout["from_version"], rollout["to_version"]) == (v1, v2)
    assert rollout["created_by"] == "alias:champion"
    assert world.serving_version() == v2
    assert world.admin.deployments()[0]["version"] == v2


def _forge(world: World, document: dict[str, object], key: Path | None = None) -> bytes:
    from edgeloop.fleet.signing import Signer, load_or_create_key
    from edgeloop.model.desired import canonical_json

    signer = Signer(load_or_create_key(key or world.key_path))
    return canonical_json(signer.envelope(document))


@pytest.mark.parametrize(
    "how",
    [
        "flipped-byte",
        "downgrade",
        pytest.param("wrong-signer", marks=pytest.mark.slow),
        pytest.param("other-site", marks=pytest.mark.slow),
        pytest.param("replay", marks=pytest.mark.slow),
        pytest.param("garbage", marks=pytest.mark.slow),
    ],
)
def test_tampered_desired_state_is_rejected_and_the_site_keeps_serving(
    world: World, how: str, tmp_path: Path
) -> None:
    from edgeloop.fleet.signing import desired_key

    v1 = _deploy_v1(world)
    agent = world.agent(join_token_file=world.join_token_file())
    world.replicate()
    agent.start()
    v2 = world.register(seed=1)
    world.admin.deploy("vision", MODEL, v2, "region=eu")
    world.replicate()
    wait_until(lambda: world.serving_version() == v2, step=agent.step)
    genuine = world.edge_store.get(desired_key(SITE)).read()
    generation = agent.state.generation
    world.control.stop()  # offline: only the store copy can bring a new state
    document = {
        "kind": "edgeloop.desired-state/v1",
        "project": "shop",
        "site": SITE,
        "generation": generation + 1,
        "issued_at": 0.0,
        "models": [{"model": MODEL, "version": v1, "deployment": "vision", "rollout": None,
                    "rollback": False}],
    }  # fmt: skip
    if how == "flipped-byte":
        forged = bytearray(genuine)
        forged[len(forged) // 2] ^= 0x01
        raw = bytes(forged)
    elif how == "wrong-signer":
        raw = _forge(world, {**document, "models": []}, tmp_path / "attacker.pem")
    elif how == "other-site":
        raw = _forge(world, {**document, "site": "edge-b", "models": []})
    elif how == "replay":
        raw = _forge(world, {**document, "generation": 1, "models": []})
    elif how == "downgrade":  # correctly signed, newer, but an older version without rollback
        raw = _forge(world, document)
    else:
        raw = b'{"kind": "edgeloop.signed/v1", "payload": "!!", "signature": ""}'
    world.edge_store.put(desired_key(SITE), raw)
    for _ in range(3):
        agent.step()
    assert world.serving_version() == v2
    assert [h["version"] for h in agent.state.history if h["kind"] == "load"] == [v1, v2]
    outcomes = [r["outcome"] for r in agent.state.outbox]
    if how == "replay":
        assert agent.state.generation == generation and outcomes == []
    elif how == "downgrade":
        assert outcomes == ["refused"]  # reported once, however many rounds
    else:
        assert agent.state.generation == generation
        assert outcomes and set(outcomes) == {"alert"}


def test_backlog_near_full_raises_one_alert_and_clears_it(world: World, tmp_path: Path) -> None:
    from edgeloop.journal import SQLiteJournal
    from edgeloop.journal.base import JournalSink
    from edgeloop.replication.ledger import Ledger
    from edgeloop.replication.plan import CopyTask

    _deploy_v1(world)
    ledger_path = tmp_path / "captures-up.db"
    journal = SQLiteJournal(tmp_path / "edge-journal.db")
    agent = world.agent(
        join_token_file=world.join_token_file(),
        ledgers=[ledger_path],
        max_backlog=10,
        events=JournalSink(journal),
    )
    world.replicate()
    agent.start()
    ledger = Ledger(ledger_path)
    ledger.enqueue([CopyTask(f"captures/m/{i}.parquet", 1, None) for i in range(9)])
    for _ in range(3):
        agent._dirty = True  # a heartbeat each round
        agent.step()
    assert world.site()["backlog"] == 9
    alerts = [e for e in journal.read(0, limit=100) if e.event.type == "site.alert"]
    assert [a.event.subject for a in alerts] == ["backlog"]  # once per crossing
    ledger.mark_gone([f"captures/m/{i}.parquet" for i in range(9)])
    agent._dirty = True
    agent.step()
    cleared = [e for e in journal.read(0, limit=100) if e.event.type == "site.alert_cleared"]
    assert [c.event.subject for c in cleared] == ["backlog"]
    ledger.close()
    journal.close()

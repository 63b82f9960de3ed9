"""An edge run by hand in a workspace made by `edgeloop init`, every part a real process:
`edgeloop core` (control plane + trigger worker), `edgeloop agent` (owning `edgeloop serve`),
replication by the scaffold's rules. Also: the control plane down during a rollout, and the
agent restarted while offline, converge once it is back, with nothing applied twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from edge_harness import wait_until

from edgeloop.fleet.agent.state import StateFile
from edgeloop.fleet.auth import read_secret_file, write_secret_file
from edgeloop.fleet.client import FleetClient
from edgeloop.registry.workspace import open_registry
from edgeloop.replication.rules import replicator_for_rule
from edgeloop.testing.serving import free_port, infer_body, make_package
from edgeloop.workspace import Workspace
from edgeloop.workspace.scaffold import init_workspace

ENTRY = "from edgeloop.cli.main import run; run()"
SITE = "edge-a"
MODEL = "demo"


class Shop:
    """A workspace with its core and one edge agent as child processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        init_workspace(root)
        ws = Workspace.load(root)
        self.control_port, self.serving_port = free_port(), free_port()
        sites = [
            s.model_copy(update={"control_port": self.control_port})
            if s.name == "core"
            else s.model_copy(update={"serving_port": self.serving_port})
            if s.name == SITE
            else s
            for s in ws.config.sites
        ]
        Workspace(ws.root, ws.config.model_copy(update={"sites": sites})).save()
        self.ws = Workspace.load(root)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.url = f"http://127.0.0.1:{self.control_port}"

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "EDGELOOP_LOG_LEVEL": "INFO"},
        )
        self.procs[name] = proc
        return proc

    def start_core(self) -> None:
        self.spawn("core", "core", "-w", str(self.root), "--no-monitor")
        wait_until(lambda: _ok(f"{self.url}/healthz"), timeout=60)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=60)

    def start_agent(self, *extra: str) -> None:
        self.spawn(
            "agent", "agent", "-w", str(self.root), "--site", SITE, "--interval", "0.3",
            "--heartbeat-interval", "0.3", "--probation", "1", *extra,
        )  # fmt: skip

    def admin(self) -> FleetClient:
        token = self.root / "state" / "core" / "fleet" / "admin.token"
        return FleetClient(self.url, read_secret_file(token))

    def register(self, seed: int) -> str:
        src = self.root / "build" / str(seed)
        make_package(src, MODEL, 1, seed=seed)
        registry = open_registry(self.ws)
        try:
            return str(registry.register(src / MODEL / "1").version)
        finally:
            registry.close()

    def replicate_down(self) -> None:
        for rule in self.ws.rules():
            if rule.source == "core" and rule.target == SITE:
                with replicator_for_rule(self.ws, rule) as rep:
                    rep.run_once(full=True)

    def serving_version(self) -> str | None:
        try:
            response = httpx.post(
                f"http://127.0.0.1:{self.serving_port}/v2/models/{MODEL}/infer",
                json=infer_body(),
                timeout=5,
            )
        except httpx.HTTPError:
            return None
        return response.headers.get("x-model-version") if response.status_code == 200 else None

    def agent_state(self) -> dict[str, object]:
        state = StateFile(self.root / "state" / SITE / "agent" / "agent-state.json").load()
        return {"history": state.history, "generation": state.generation}

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    shop = Shop(tmp_path / "shop")
    yield shop
    shop.close()


def test_core_serves_the_control_plane_and_an_edge_runs_by_hand(shop: Shop) -> None:
    shop.start_core()
    log = (shop.root / "core.log").read_text()
    token_path = shop.root / "state" / "core" / "fleet" / "admin.token"
    assert str(token_path) in log  # the path is printed, the token is not
    assert read_secret_file(token_path) not in log
    assert token_path.stat().st_mode & 0o777 == 0o600
    admin = shop.admin()
    doc = admin.request("GET", "/openapi.json")
    assert "/api/v1/sites/{site}/desired" in doc["paths"]
    v1 = shop.register(seed=0)
    admin.deploy("vision", MODEL, v1, "region=eu")
    join = shop.root / "edge-a.join"
    write_secret_file(join, admin.join_token(SITE, {"region": "eu"})["join_token"])
    shop.start_agent("--join-token-file", str(join))
    wait_until(lambda: admin.sites() and admin.sites()[0]["name"] == SITE, timeout=60)
    shop.replicate_down()  # the package and the desired state reach the edge store
    wait_until(lambda: shop.serving_version() == v1, timeout=90)
    wait_until(lambda: admin.sites()[0]["loaded"] == {MODEL: v1}, timeout=30)
    assert re.search(
        r"joined the control plane as site edge-a", (shop.root / "agent.log").read_text()
    )


@pytest.mark.slow
def test_control_plane_down_and_agent_restarted_offline_converge_once(shop: Shop) -> None:
    shop.start_core()
    admin = shop.admin()
    v1 = shop.register(seed=0)
    admin.deploy("vision", MODEL, v1, "")
    join = shop.root / "edge-a.join"
    write_secret_file(join, admin.join_token(SITE, {})["join_token"])
    shop.start_agent("--join-token-file", str(join))
    wait_until(lambda: admin.sites(), timeout=60)
    shop.replicate_down()
    wait_until(lambda: shop.serving_version() == v1, timeout=90)
    v2 = shop.register(seed=1)
    rollout = admin.start_rollout("vision", v2, "100", {"min_healthy_seconds": 0})
    shop.replicate_down()  # v2 and the new desired state are at the edge
    shop.stop("core", signal.SIGKILL)  # the control plane dies mid-rollout
    # The agent takes the new state from its store copy while the core is away...
    wait_until(lambda: shop.serving_version() == v2, timeout=90)
    # ...and is restarted while still offline: it serves v2 again, from local state only.
    shop.stop("agent")
    assert shop.serving_version() is None  # it owned the server
    shop.start_agent()
    wait_until(lambda: shop.serving_version() == v2, timeout=90)
    shop.start_core()  # back: the rollout sees the site on v2 and completes
    wait_until(lambda: admin.rollout(rollout["id"])["state"] == "completed", timeout=90)
    time.sleep(1.0)
    history = shop.agent_state()["history"]
    loads = [(h["kind"], h["version"]) for h in history if h["kind"] != "restart"]  # type: ignore[index]
    assert loads == [("load", v1), ("load", v2)]  # nothing applied twice

"""One core and one edge, all real: a control plane on loopback (uvicorn in a thread), a
registry signing packages into the core store, the replicator carrying `models/` and
`fleet/desired/` down to the edge store, and an agent owning a real `edgeloop serve` child."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from sklearn.ensemble import RandomForestClassifier

from edgeloop.fleet.agent import Agent, AgentConfig, HealthBounds
from edgeloop.fleet.app import create_control_app
from edgeloop.fleet.auth import read_secret_file, write_secret_file
from edgeloop.fleet.client import FleetClient
from edgeloop.fleet.control import ControlSettings
from edgeloop.journal import SQLiteJournal
from edgeloop.registry import Registry, generate_signing_key
from edgeloop.replication.rules import replicator_for_urls
from edgeloop.serving import package_estimator
from edgeloop.store import LocalStore
from edgeloop.testing.serving import free_port, infer_body, make_package

SITE = "edge-a"
MODEL = "demo"


class ControlServer:
    """The control plane app on a real loopback port; stop() and start() again on the same
    port and state, to play an outage."""

    def __init__(self, settings: ControlSettings, port: int | None = None) -> None:
        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> ControlServer:
        app = create_control_app(self.settings)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                access_log=False,
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "control plane down"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=30)
        self.server = None


@dataclass
class World:
    root: Path
    key_path: Path
    public_key: str
    core_store: LocalStore
    edge_store: LocalStore
    registry: Registry
    control: ControlServer
    admin: FleetClient
    journal: SQLiteJournal
    serving_port: int = field(default_factory=free_port)
    agents: list[Agent] = field(default_factory=list)

    def register(self, seed: int = 0, features: int = 4) -> str:
        """Register a new version of MODEL (a forest over `features` inputs); its number."""
        src = self.root / "build" / f"{seed}-{features}-{time.monotonic_ns()}"
        if features == 4:
            make_package(src, MODEL, 1, seed=seed)
        else:  # a version whose input no client sends: every request fails with 400
            rng = np.random.default_rng(seed)
            x = rng.random((80, features)).astype(np.float32)
            y = (x[:, 0] > 0.5).astype(np.int64)
            estimator = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
            package_estimator(estimator.fit(x, y), src / MODEL / "1", name=MODEL, version=1)
        return str(self.registry.register(src / MODEL / "1").version)

    def replicate(self) -> None:
        """Carry packages and desired state from the core store down to the edge store."""
        for prefix in ("models/", "fleet/desired/"):
            rep = replicator_for_urls(
                self.core_store.url,
                self.edge_store.url,
                prefix=prefix,
                state_dir=self.root / "replication" / prefix.strip("/").replace("/", "-"),
            )
            with rep:
                rep.run_once()

    def join_token_file(self) -> Path:
        token = self.admin.join_token(SITE, {"region": "eu"})["join_token"]
        path = self.root / "join.token"
        write_secret_file(path, token)
        return path

    def agent_config(self, **overrides: Any) -> AgentConfig:
        config = AgentConfig(
            site=SITE,
            state_dir=self.root / SITE / "agent",
            store=self.edge_store,
            public_key=self.public_key,
            control_url=self.control.url,
            serving_url=f"http://127.0.0.1:{self.serving_port}",
            serve_args=["--server", "uvicorn", "--port", str(self.serving_port),
                        "--poll-interval", "0.2"],
            interval=0.2,
            heartbeat_interval=0.2,
            bounds=HealthBounds(probation_seconds=3.0, min_requests=5, max_error_rate=0.2),
            incomplete_package_grace=1.0,
        )  # fmt: skip
        for name, value in overrides.items():
            setattr(config, name, value)
        return config

    def agent(self, **overrides: Any) -> Agent:
        agent = Agent(self.agent_config(**overrides))
        self.agents.append(agent)
        return agent

    def infer(self) -> httpx.Response:
        return httpx.post(
            f"http://127.0.0.1:{self.serving_port}/v2/models/{MODEL}/infer",
            json=infer_body(),
            timeout=10,
        )

    def serving_version(self) -> str | None:
        try:
            response = self.infer()
        except httpx.HTTPError:
            return None
        return response.headers.get("x-model-version") if response.status_code == 200 else None

    def site(self) -> dict[str, Any]:
        return self.admin.request("GET", f"/sites/{SITE}")

    def close(self) -> None:
        for agent in self.agents:
            agent.close()
        self.control.stop()
        self.registry.close()
        self.journal.close()


def make_world(root: Path) -> World:
    key_path = root / "core" / "signing-key.pem"
    public_key = generate_signing_key(key_path)
    core_store = LocalStore(root / "core" / "store")
    edge_store = LocalStore(root / SITE / "store")
    journal = SQLiteJournal(root / "core" / "journal.db")
    registry = Registry(
        root / "core" / "registry.db", core_store, public_key=public_key, signing_key=key_path
    )
    settings = ControlSettings(
        state_dir=root / "core" / "fleet",
        project="shop",
        signing_key=key_path,  # one workspace key signs packages and desired state
        journal=journal,
        store=core_store,
        tick_interval=0.1,
        heartbeat_flush_interval=0,
        long_poll_recheck=0.2,
        token_cache_seconds=0,
        resolve_alias=lambda model, alias: _alias(registry, model, alias),
    )
    control = ControlServer(settings).start()
    admin = FleetClient(control.url, read_secret_file(settings.admin_token_path))
    return World(
        root, key_path, public_key, core_store, edge_store, registry, control, admin, journal
    )


def _alias(registry: Registry, model: str, alias: str) -> str | None:
    version = registry.aliases(model).get(alias)
    return None if version is None else str(version)


def wait_until(predicate: Any, timeout: float = 60.0, step: Any = None) -> Any:
    """Poll `predicate` (calling `step` between tries, e.g. an agent round) until truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if step is not None:
            step()
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def tamper(store_root: Path, version: str, how: str) -> None:
    """Damage the edge's copy of a package the way an attacker or a broken disk would."""
    pkg = store_root / "models" / MODEL / version
    onnx = pkg / "model.onnx"
    if how == "flipped-byte":
        data = bytearray(onnx.read_bytes())
        data[len(data) // 2] ^= 0x01
        onnx.write_bytes(bytes(data))
    elif how == "extra-file":
        (pkg / "README.md").write_text("planted")
    elif how == "missing-file":
        onnx.unlink()
    elif how == "renamed-file":
        onnx.rename(pkg / "model2.onnx")
    elif how == "symlink":
        target = pkg.parent / "outside.onnx"
        shutil.copy(onnx, target)
        onnx.unlink()
        onnx.symlink_to(target)
    else:
        raise ValueError(how)

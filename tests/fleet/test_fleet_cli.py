"""The fleet, tokens and audit commands against a real control plane over HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.fleet.app import create_control_app
from edgeloop.fleet.control import ControlSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A control plane served by uvicorn in a thread; yields its URL and admin token file."""
    settings = ControlSettings(state_dir=tmp_path / "control", project="acme", tick_interval=0.05)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_control_app(settings), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url, settings.admin_token_path
    server.should_exit = True
    thread.join(timeout=10)


def cli(url: str, token_file: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--control", url, "--token-file", str(token_file)])
    assert result.exit_code == 0, result.output
    return result.output


def json_lines(output: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_fleet_commands_drive_a_rollout_end_to_end(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, admin = served
    ops_file = tmp_path / "ops.token"
    cli(url, admin, "tokens", "create", "olga", "--role", "operator", "--out", str(ops_file))
    listed = json_lines(cli(url, admin, "tokens", "ls", "--json"))
    assert {t["role"] for t in listed} == {"admin", "operator"}

    agents = {}
    for i, ring in enumerate(["canary", "main", "main"]):
        site = f"edge-{i}"
        join = cli(url, ops_file, "fleet", "join-token", site, "--label", f"ring={ring}").strip()
        joined = httpx.post(f"{url}/api/v1/join", headers={"Authorization": f"Bearer {join}"})
        agents[site] = joined.json()["token"]
    sites = json_lines(cli(url, ops_file, "fleet", "sites", "--json", "-l", "ring=main"))
    assert sorted(s["name"] for s in sites) == ["edge-1", "edge-2"]
    assert "edge-0" in cli(url, ops_file, "fleet", "sites")

    cli(url, ops_file, "fleet", "deploy", "vision", "-m", "detector", "-v", "1")
    started = json_lines(
        cli(
            url,
            ops_file,
            "fleet",
            "rollout",
            "start",
            "vision",
            "2",
            "--waves",
            "label:ring=canary",
            "--hold",
            "0s",
            "--json",
        )
    )[0]
    rollout_id = started["id"]

    # Agents report the version their desired state names, until the rollout completes.
    deadline = time.monotonic() + 60
    state = "running"
    while state == "running" and time.monotonic() < deadline:
        for site, token in agents.items():
            headers = {"Authorization": f"Bearer {token}"}
            doc = httpx.get(f"{url}/api/v1/sites/{site}/desired", headers=headers).json()
            loaded = {m["model"]: m["version"] for m in doc["document"]["models"]}
            httpx.post(
                f"{url}/api/v1/sites/{site}/heartbeat",
                headers=headers,
                json={"loaded": loaded, "healthy": True},
            )
        time.sleep(0.1)
        state = json_lines(cli(url, ops_file, "fleet", "rollout", "status", rollout_id, "--json"))[
            0
        ]["state"]
    assert state == "completed"
    assert "completed" in cli(url, ops_file, "fleet", "rollout", "status")
    view = cli(url, ops_file, "fleet", "rollout", "status", rollout_id)
    assert "wave 2: passed" in view

    out = cli(url, ops_file, "fleet", "rollout", "rollback", rollout_id, "--reason", "drill")
    assert "rolled_back" in out
    trail = json_lines(cli(url, admin, "audit", "--json", "-n", "500"))
    assert any(
        e["path"].endswith(f"/{rollout_id}/rollback") and e["actor"] == "olga" for e in trail
    )
    assert "olga (operator)" in cli(url, admin, "audit")


def test_cli_errors_say_what_to_do(served: tuple[str, Path], tmp_path: Path) -> None:
    url, admin = served
    runner = CliRunner()
    no_token = runner.invoke(app, ["fleet", "sites", "--control", url], env={"EDGELOOP_TOKEN": ""})
    assert no_token.exit_code == 1
    viewer = tmp_path / "viewer.token"
    cli(url, admin, "tokens", "create", "vic", "--role", "viewer", "--out", str(viewer))
    denied = runner.invoke(app, ["tokens", "ls", "--control", url, "--token-file", str(viewer)])
    assert denied.exit_code == 1
    assert "not allowed" in denied.output
    missing = runner.invoke(
        app, ["fleet", "rollout", "pause", "ro_nope", "--control", url, "--token-file", str(admin)]
    )
    assert missing.exit_code == 1
    assert "no rollout" in missing.output
    down = runner.invoke(
        app,
        [
            "fleet",
            "sites",
            "--control",
            f"http://127.0.0.1:{_free_port()}",
            "--token-file",
            str(admin),
        ],
    )
    assert down.exit_code == 1
    assert "cannot reach the control plane" in down.output

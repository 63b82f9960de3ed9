"""`edgeloop up`, `status` and `down` as real processes on a real workspace."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from up_helpers import use_free_ports, wait_for

CLI = [sys.executable, "-c", "from edgeloop.cli.main import run; run()"]


def edgeloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def status(ws: Path) -> dict[str, Any]:
    out = edgeloop("status", "-w", str(ws), "--json")
    return dict(json.loads(out.stdout))


def components(ws: Path) -> dict[str, dict[str, Any]]:
    state = status(ws)
    return {c["key"]: c for c in state.get("components", [])}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_up_supervises_status_reports_and_down_stops(workspace_dir: Path) -> None:
    ws = use_free_ports(workspace_dir)
    port_a = ws.site("edge-a").serving_port
    assert edgeloop("status", "-w", str(ws.root)).returncode == 1  # nothing running yet
    up = subprocess.Popen(
        [*CLI, "up", "-w", str(ws.root), "--no-agents", "--grace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: components(ws.root).get("edge-a-server", {}).get("health") == "ok",
            "edge-a's server to answer its health check",
        )
        comps = components(ws.root)
        assert set(comps) == {
            "core-core",
            "edge-a-server",
            "edge-a-replicator",
            "edge-b-server",
            "edge-b-replicator",
        }
        assert comps["edge-a-server"]["port"] == port_a
        assert all(c["status"] == "up" for c in comps.values())
        table = edgeloop("status", "-w", str(ws.root))
        assert table.returncode == 0 and "edge-a" in table.stdout and "replicator" in table.stdout

        server_pid = comps["edge-a-server"]["pid"]
        os.kill(server_pid, signal.SIGKILL)
        wait_for(
            lambda: (
                components(ws.root)["edge-a-server"]["restarts"] == 1
                and components(ws.root)["edge-a-server"]["health"] == "ok"
            ),
            "the killed server to be restarted and healthy",
        )
        assert components(ws.root)["edge-a-server"]["pid"] != server_pid
        assert (ws.root / "logs" / "edge-a-server.log").read_text().count("start #") == 2

        pids = [c["pid"] for c in components(ws.root).values()]
        down = edgeloop("down", "-w", str(ws.root))
        assert down.returncode == 0, down.stdout + down.stderr
        assert up.wait(30) == 0
        assert all(not alive(pid) for pid in pids)
        assert edgeloop("status", "-w", str(ws.root)).returncode == 1
        assert "all components stopped" in (up.stdout.read() if up.stdout else "")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(30)


def test_down_without_up_says_so(workspace_dir: Path) -> None:
    out = edgeloop("down", "-w", str(workspace_dir))
    assert out.returncode == 1
    assert "no `edgeloop up` is running" in out.stderr


def test_down_stops_what_a_killed_up_left_running(workspace_dir: Path) -> None:
    ws = use_free_ports(workspace_dir)
    up = subprocess.Popen(
        [*CLI, "up", "-w", str(ws.root), "--no-agents"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids: list[int] = []
    try:
        wait_for(
            lambda: (
                all(c["status"] == "up" for c in components(ws.root).values())
                and len(components(ws.root)) == 5
            ),
            "every component to start",
        )
        pids = [c["pid"] for c in components(ws.root).values()]
        up.kill()  # SIGKILL: no chance to stop its children
        up.wait(30)
        assert all(alive(pid) for pid in pids)  # orphans, still holding their ports
        stale = edgeloop("status", "-w", str(ws.root))
        said = " ".join(stale.stderr.split())
        assert stale.returncode == 1 and "5 process(es) running" in said, said
        down = edgeloop("down", "-w", str(ws.root))
        assert down.returncode == 0, down.stderr
        assert "orphaned" in down.stdout
        wait_for(lambda: not any(alive(pid) for pid in pids), "the orphans to stop", 30)
        assert edgeloop("down", "-w", str(ws.root)).returncode == 1  # nothing left to stop
    finally:
        if up.poll() is None:
            up.kill()
        for pid in pids:  # a failed assertion above must not leave orphans running
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # components run in sessions of their own

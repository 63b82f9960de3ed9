"""`edgeloop agent` stops on SIGTERM even while it waits for a server that never comes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from edgeloop.workspace import init_workspace


def test_sigterm_while_waiting_for_the_serving_token_stops_the_agent(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    log = tmp_path / "agent.log"
    command = [
        sys.executable, "-c", "from edgeloop.cli.main import run; run()", "agent",
        "-w", str(ws.root), "--site", "edge-a", "--no-serve",
        "--serving-url", "http://127.0.0.1:9", "--serving-token-file", str(tmp_path / "none"),
    ]  # fmt: skip
    with open(log, "wb") as out:
        agent = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):  # until it says it started (at most a minute)
            if "agent of site edge-a" in log.read_text():
                break
            time.sleep(0.1)
        agent.send_signal(signal.SIGTERM)
        # The serving token wait lasts server_start_timeout (60 s); SIGTERM must end it first.
        assert agent.wait(timeout=30) is not None, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()

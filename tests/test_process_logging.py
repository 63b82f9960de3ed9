"""edgeloop processes log HTTP client requests only at DEBUG: a real `edgeloop agent` polling a
control plane on loopback (here a stub whose API answers 503 and whose inference server is
live) writes no httpx line per request at the default level, and does with
EDGELOOP_LOG_LEVEL=DEBUG."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """A live inference server whose control-plane API is unavailable."""

    requests = 0  # to the control-plane API

    def _answer(self) -> None:
        if self.path == "/v2/health/live":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).requests += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture
def control_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def agent_output(tmp_path: Path, control: str, level: str | None) -> str:
    """Run `edgeloop agent` until it has made its first requests; return what it logged."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    public = tmp_path / "public.pem"
    pem = serialization.Encoding.PEM
    public.write_bytes(key.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    token = tmp_path / "agent.token"
    token.write_text("not-a-real-token")
    token.chmod(0o600)
    serving_token = tmp_path / "serving.token"
    serving_token.write_text("not-a-real-token")
    serving_token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "EDGELOOP_LOG_LEVEL"}
    if level is not None:
        env["EDGELOOP_LOG_LEVEL"] = level
    command = [sys.executable, "-c", "from edgeloop.cli.main import run; run()", "agent"]
    command += ["--site", "edge-a", "--control", control, "--token-file", str(token)]
    command += ["--store", str(tmp_path / "store"), "--public-key", str(public)]
    command += ["--state-dir", str(tmp_path / "state"), "--no-serve", "--interval", "0.2"]
    command += ["--serving-url", control, "--serving-token-file", str(serving_token)]
    before = _Unavailable.requests
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while _Unavailable.requests - before < 2 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0].decode()
            time.sleep(0.1)
    finally:
        # SIGKILL: this agent, with no server and a control plane that answers 503, is slow
        # to act on SIGTERM, and how it stops is not what this test is about.
        process.kill()
        out = process.communicate(timeout=30)[0].decode()
    assert _Unavailable.requests - before >= 2, out  # the agent did poll the control plane
    return out


def test_agent_logs_no_http_request_lines_by_default(tmp_path: Path, control_url: str) -> None:
    out = agent_output(tmp_path, control_url, None)
    assert "HTTP Request" not in out, out
    assert "agent of site edge-a" in out


def test_debug_level_shows_http_request_lines(tmp_path: Path, control_url: str) -> None:
    out = agent_output(tmp_path, control_url, "DEBUG")
    assert "INFO httpx: HTTP Request" in out, out

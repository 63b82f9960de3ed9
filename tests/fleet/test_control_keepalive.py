"""A served control plane keeps an idle connection open longer than clients keep one in
their pool, so a client reusing it never races the server's close (benchmarks/fleet.py saw
thousands of heartbeats fail so at 5,000 sites with uvicorn's 5 s default)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from edgeloop.fleet.app import KEEP_ALIVE_SECONDS
from edgeloop.fleet.control import ControlSettings
from edgeloop.fleet.embedded import ControlPlaneThread
from edgeloop.testing.serving import free_port

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n"


def _exchange(sock: socket.socket) -> bytes:
    sock.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b'"ok"}'):
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


@pytest.mark.slow
def test_an_idle_connection_outlives_the_clients_pool_expiry(tmp_path: Path) -> None:
    assert KEEP_ALIVE_SECONDS > 15, "longer than httpx's 5 s and aiohttp's 15 s"
    server = ControlPlaneThread(
        ControlSettings(state_dir=tmp_path), host="127.0.0.1", port=free_port()
    )
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert _exchange(sock).startswith(b"HTTP/1.1 200")
            time.sleep(6)  # idle past uvicorn's default keep-alive (5 s)
            assert _exchange(sock).startswith(b"HTTP/1.1 200"), "the server closed it"
    finally:
        server.stop()

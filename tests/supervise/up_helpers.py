"""Helpers for tests that run `edgeloop up` on a real workspace: free ports, waiting."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from edgeloop.workspace import Workspace
from edgeloop.workspace.config import Tier


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use_free_ports(root: Path) -> Workspace:
    """Give the workspace's server and control plane ports nobody else uses now (tests run
    beside other tests)."""
    ws = Workspace.load(root)
    sites = []
    for site in ws.config.sites:
        if site.tier == Tier.EDGE:
            site = site.model_copy(update={"serving_port": free_port()})
        elif site.tier == Tier.CORE:
            site = site.model_copy(update={"control_port": free_port()})
        sites.append(site)
    ws = Workspace(ws.root, ws.config.model_copy(update={"sites": sites}))
    ws.save()
    return Workspace.load(root)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")

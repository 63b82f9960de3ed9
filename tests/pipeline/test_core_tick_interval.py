"""The control plane's rollout tick of `edgeloop core`: from the core site's `tick_interval`
in edgeloop.yaml, overridden by `--tick-interval`, 1 s when neither sets it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.core import _start_control_plane
from edgeloop.cli.main import app
from edgeloop.errors import ConfigError
from edgeloop.fleet.control import ControlSettings
from edgeloop.workspace import Workspace


def with_tick(root: Path, tick: str | None) -> Workspace:
    config = root / "edgeloop.yaml"
    text = config.read_text()
    if tick is not None:
        text = text.replace("  tier: core\n", f"  tier: core\n  tick_interval: {tick}\n", 1)
    config.write_text(text)
    return Workspace.load(root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_core_sites_tick_interval_reaches_the_control_plane(workspace_dir: Path) -> None:
    assert ControlSettings.for_workspace(Workspace.load(workspace_dir)).tick_interval == 1.0
    ws = with_tick(workspace_dir, "0.25")
    assert ws.site("core").tick_interval == 0.25
    assert ControlSettings.for_workspace(ws).tick_interval == 0.25


def test_tick_interval_option_overrides_the_config(workspace_dir: Path) -> None:
    ws = with_tick(workspace_dir, "0.5")
    plane = _start_control_plane(ws, "core", "127.0.0.1", free_port(), 0.1)
    try:
        assert plane.settings.tick_interval == 0.1
    finally:
        plane.stop()
    plane = _start_control_plane(ws, "core", "127.0.0.1", free_port(), None)
    try:
        assert plane.settings.tick_interval == 0.5
    finally:
        plane.stop()


def test_a_bad_tick_interval_is_refused(workspace_dir: Path) -> None:
    with pytest.raises(ConfigError, match="tick_interval"):
        with_tick(workspace_dir, "0")
    result = CliRunner().invoke(
        app, ["core", "--once", "--tick-interval", "0", "-w", str(workspace_dir)]
    )
    assert result.exit_code != 0 and "tick-interval" in result.output

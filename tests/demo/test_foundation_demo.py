"""The data-plane demo runs end to end and verifies what it claims."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.demo.foundation import run_foundation_demo
from edgeloop.errors import ConfigError
from edgeloop.workspace import Workspace


def test_demo_replicates_every_batch_once(tmp_path: Path) -> None:
    result = run_foundation_demo(tmp_path / "demo", batches=5, rows=20)
    assert result.written == {"edge-a": 5, "edge-b": 5}
    assert result.at_core == 10
    assert result.replicated_events == 10
    assert result.verified
    ws = Workspace.load(tmp_path / "demo")
    edge_keys = {i.key for e in ("edge-a", "edge-b") for i in ws.store(e).list()}
    assert {i.key for i in ws.store("core").list()} == edge_keys


def test_demo_refuses_to_wipe_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an edgeloop workspace"):
        run_foundation_demo(tmp_path, batches=1, rows=1)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_command_exits_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "d"), "--batches", "2"])
    assert result.exit_code == 0, result.output
    assert "verified by SHA-256" in result.output

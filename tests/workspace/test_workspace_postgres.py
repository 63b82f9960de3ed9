"""A workspace moved to PostgreSQL by editing edgeloop.yaml only: the core's journal, the
registry and the control plane all land in a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.errors import ConfigError
from edgeloop.fleet.control import ControlSettings, build_control_plane
from edgeloop.journal import JournalSink
from edgeloop.journal.postgres import PostgresJournal
from edgeloop.journal.sqlite import SQLiteJournal
from edgeloop.model.events import EventType
from edgeloop.registry.workspace import open_registry
from edgeloop.store.journaled import JournaledStore
from edgeloop.workspace import Workspace

runner = CliRunner()
pytestmark = pytest.mark.postgres


def move_core_to_postgres(workspace_dir: Path, url: str) -> Workspace:
    ws = Workspace.load(workspace_dir)
    sites = [
        s.model_copy(update={"journal": f"{url}?journal=core", "database": url})
        if s.name == "core"
        else s
        for s in ws.config.sites
    ]
    moved = Workspace(ws.root, ws.config.model_copy(update={"sites": sites}))
    moved.save()
    return Workspace.load(workspace_dir)


def test_core_journal_registry_and_control_plane_on_postgres(
    workspace_dir: Path, postgres_url: str
) -> None:
    ws = move_core_to_postgres(workspace_dir, postgres_url)
    assert isinstance(ws.journal("core"), PostgresJournal)
    assert isinstance(ws.journal("edge-a"), SQLiteJournal)
    with pytest.raises(ConfigError, match="no SQLite journal"):
        ws.journal_path("core")

    edge = JournaledStore(ws.store("edge-a"), JournalSink(ws.journal("edge-a")), "edge-a")
    for i in range(3):
        edge.put(f"captures/m/edge-a/2026/11/25/{i}.parquet", b"rows" * (i + 1))
    result = runner.invoke(app, ["replicate", "-w", str(workspace_dir), "--once"])
    assert result.exit_code == 0, result.output
    replicated = (
        Workspace.load(workspace_dir).journal("core").read(0, types=[EventType.OBJECT_REPLICATED])
    )
    assert sorted(e.event.subject for e in replicated) == [
        f"captures/m/edge-a/2026/11/25/{i}.parquet" for i in range(3)
    ]

    registry = open_registry(ws)
    try:
        assert registry.engine.dialect.name == "postgresql"
        assert registry.models() == []
    finally:
        registry.close()

    settings = ControlSettings.for_workspace(ws)
    assert settings.db_url == postgres_url
    plane = build_control_plane(settings)
    try:
        assert plane.engine.dialect.name == "postgresql"
        assert plane.minted_admin and settings.admin_token_path.exists()
    finally:
        plane.engine.dispose()


def test_relative_sqlite_journal_path_is_inside_the_workspace(workspace_dir: Path) -> None:
    ws = Workspace.load(workspace_dir)
    sites = [
        s.model_copy(update={"journal": "journals/a.db"}) if s.name == "edge-a" else s
        for s in ws.config.sites
    ]
    Workspace(ws.root, ws.config.model_copy(update={"sites": sites})).save()
    moved = Workspace.load(workspace_dir)
    assert moved.journal_path("edge-a") == moved.root / "journals" / "a.db"
    (moved.root / "journals").mkdir()
    assert isinstance(moved.journal("edge-a"), SQLiteJournal)
    assert moved.journal_path("edge-b") == moved.state_dir("edge-b") / "journal.db"

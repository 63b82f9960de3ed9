"""Workspace config: `edgeloop init`, validation errors with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.errors import ConfigError
from edgeloop.workspace import Workspace, init_workspace, load_config, parse_config
from edgeloop.workspace.config import Tier

runner = CliRunner()


def test_init_writes_core_and_two_edges(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "demo")
    loaded = Workspace.load(tmp_path / "demo")
    assert loaded.config == ws.config
    assert [s.tier for s in loaded.sites()] == [Tier.CORE, Tier.EDGE, Tier.EDGE]
    assert loaded.config.project == "demo"
    for site in loaded.sites():
        store = loaded.store(site.name)
        assert Path(store.url.removeprefix("file://")).is_relative_to(loaded.root)
    up = [r for r in loaded.rules() if r.target == "core"]
    assert {r.source for r in up} == {"edge-a", "edge-b"}
    down = [(r.target, r.prefix) for r in loaded.rules() if r.source == "core"]
    assert sorted(down) == sorted(
        (edge, prefix) for edge in ("edge-a", "edge-b") for prefix in ("models/", "fleet/desired/")
    )


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    init_workspace(tmp_path)
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        init_workspace(tmp_path)
    init_workspace(tmp_path, "renamed", force=True)
    assert load_config(tmp_path).project == "renamed"


def test_errors_name_file_line_and_field() -> None:
    text = (
        "project: demo\n"
        "sites:\n"
        "  - name: core\n"
        "    tier: core\n"
        "    store: s/core\n"
        "  - name: Edge_A\n"
        "    tier: fridge\n"
        "    store: s/a\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "ws/edgeloop.yaml")
    message = str(info.value)
    assert "ws/edgeloop.yaml:6: sites.1.name" in message
    assert "ws/edgeloop.yaml:7: sites.1.tier" in message
    assert "docs/workspace.md" in message


def test_unknown_fields_and_bad_references_are_refused() -> None:
    with pytest.raises(ConfigError, match="colour"):
        parse_config("project: p\nsites: [{name: a, tier: edge, store: x, colour: red}]\n")
    with pytest.raises(ConfigError, match="names site 'nowhere'"):
        parse_config(
            "project: p\nsites: [{name: a, tier: edge, store: x}]\n"
            "replication: [{from: a, to: nowhere}]\n"
        )
    with pytest.raises(ConfigError, match="unique"):
        parse_config(
            "project: p\nsites:\n"
            "  - {name: a, tier: edge, store: x}\n"
            "  - {name: a, tier: core, store: y}\n"
        )


def test_bad_yaml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("project: [unclosed\n")
    with pytest.raises(ConfigError, match="edgeloop init"):
        load_config(tmp_path)


def test_cli_init_and_journal_tail(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "w"), "--project", "shop"])
    assert result.exit_code == 0, result.output
    assert "Created workspace shop" in result.output
    again = runner.invoke(app, ["init", str(tmp_path / "w")])
    assert again.exit_code == 1
    assert "already exists" in again.output
    ws = Workspace.load(tmp_path / "w")
    from edgeloop.model.events import Event

    ws.journal("core").append(Event(id="one", type="object.replicated", site="core", subject="k"))
    tail = runner.invoke(app, ["journal", "tail", "-s", "core", "-w", str(ws.root), "--json"])
    assert tail.exit_code == 0, tail.output
    assert '"id":"one"' in tail.output


def test_environment_settings_use_the_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from edgeloop.settings import Settings

    monkeypatch.setenv("EDGELOOP_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("EDGELOOP_NO_PROGRESS", "1")
    settings = Settings()
    assert settings.workspace == tmp_path
    assert settings.no_progress is True

"""Every CLI command has help text, answers --help, and is documented somewhere in docs/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from edgeloop.cli.main import app

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    root = typer.main.get_command(app)

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        yield path, cmd
        # typer ships its own click; duck-type groups instead of importing click's classes.
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, (*path, name))

    yield from walk(root, ())


COMMANDS = [path for path, _ in _commands() if path]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_has_help(path: tuple[str, ...]) -> None:
    command = dict(_commands())[path]
    assert (command.help or "").strip(), f"`edgeloop {' '.join(path)}` has no help text"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_is_documented(path: tuple[str, ...]) -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    assert f"edgeloop {' '.join(path)}" in text, f"`edgeloop {' '.join(path)}` is not in docs/"

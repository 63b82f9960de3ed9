"""The root command imports a noun's module only when that noun runs, and lists the nouns
with summaries that agree with their own help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.lazy import LazyCommands
from edgeloop.cli.main import COMMANDS, app
from edgeloop.store import LocalStore

HEAVY = ["numpy", "pyarrow", "sklearn", "onnxruntime", "fastapi", "sqlalchemy", "httpx"]

_PROBE = """
import json, sys
from edgeloop.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def _heavy_imports(*args: str, heavy: list[str] = HEAVY) -> list[str]:
    """Heavy modules a real `edgeloop ARGS` process has imported by the time it exits."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=heavy), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args", [["--help"], ["replicate", "--help"], ["store", "--help"]], ids=" ".join
)
def test_help_and_replication_commands_import_no_heavy_module(args: list[str]) -> None:
    assert _heavy_imports(*args) == []


def test_replicating_between_urls_loads_no_workspace_schema(tmp_path: Path) -> None:
    src = tmp_path / "src"
    LocalStore(src).put("a/b.bin", b"x")
    args = ["replicate", "--from", f"file://{src}", "--to", f"file://{tmp_path / 'dst'}"]
    args += ["--state", str(tmp_path / "state"), "--once"]
    # (typer itself uses pydantic to convert options, so pydantic is not on this list; rich
    # is made on first use and a run without a terminal prints nothing through it)
    assert _heavy_imports(*args, heavy=[*HEAVY, "yaml", "edgeloop.workspace", "rich"]) == []
    assert LocalStore(tmp_path / "dst").get("a/b.bin").read() == b"x"


def test_a_noun_that_needs_heavy_modules_still_loads_them() -> None:
    # The probe can tell: `serve --help` imports the serving stack (numpy at least).
    assert "numpy" in _heavy_imports("serve", "--help")


def test_root_help_lists_every_noun_with_its_summary() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for name, spec in COMMANDS.items():
        assert name in result.output
        assert spec.summary.split(":")[0] in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_summary_opens_like_the_commands_own_help(name: str) -> None:
    command = COMMANDS[name].load(name)
    own = (command.help or "").split()
    summary = COMMANDS[name].summary.split()
    # A summary may shorten the help, but it opens the same way: it names the same command.
    assert own[:3] == summary[:3], f"{name}: {summary!r} vs {own!r}"


def test_unknown_noun_is_refused_with_a_suggestion() -> None:
    result = CliRunner().invoke(app, ["replicat"])
    assert result.exit_code != 0
    assert "replicate" in result.output


def test_lazy_table_loads_only_what_is_looked_up() -> None:
    loaded: list[str] = []

    class Spec:
        summary = "s"

        def __init__(self, name: str) -> None:
            self.name = name

        def load(self, name: str) -> str:
            loaded.append(name)
            return f"command {name}"

    table = LazyCommands({"eager": "e"}, {"a": Spec("a"), "b": Spec("b")})
    assert list(table) == ["eager", "a", "b"]
    assert loaded == []
    assert table["b"] == "command b"
    assert table.get("missing") is None
    assert loaded == ["b"]


def test_a_bad_setting_in_the_environment_is_one_clear_line() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from edgeloop.cli.main import run; run()", "store", "ls", "."],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGELOOP_NO_PROGRESS": "maybe"},
    )
    assert out.returncode == 2
    assert "EDGELOOP_NO_PROGRESS='maybe'" in out.stderr
    assert "Traceback" not in out.stderr

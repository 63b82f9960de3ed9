"""Helpers every CLI module shares: error reporting, output mode, workspace lookup."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import typer

from edgeloop.errors import EdgeloopError
from edgeloop.settings import get_settings

if TYPE_CHECKING:  # loaded on use: `edgeloop replicate --from URL --to URL` needs no workspace
    from rich.console import Console

    from edgeloop.workspace import Workspace

# The rich consoles are made on first use: importing rich costs 20 ms of every command's
# start, and `edgeloop replicate` with no terminal never prints through them.
_CONSOLES: dict[str, Console] = {}


def _console(name: str) -> Console:
    """`console` (stdout) or `err_console` (stderr), made the first time it is asked for."""
    made = _CONSOLES.get(name)
    if made is None:
        from rich.console import Console

        made = _CONSOLES[name] = Console(stderr=name == "err_console")
    return made


def __getattr__(name: str) -> Console:
    if name not in ("console", "err_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _console(name)


F = TypeVar("F", bound=Callable[..., Any])

WorkspaceOption = typer.Option(
    None,
    "--workspace",
    "-w",
    help="Workspace directory (holds edgeloop.yaml). Default: $EDGELOOP_WORKSPACE or '.'.",
    show_default=False,
)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn EdgeloopError into a one-line message and exit code 1, without a traceback."""
    try:
        yield
    except EdgeloopError as exc:
        _console("err_console").print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        raise typer.Exit(1) from None


def load_workspace(path: Path | None) -> Workspace:
    """The workspace at `path`, else $EDGELOOP_WORKSPACE, else the current directory."""
    from edgeloop.workspace import Workspace

    return Workspace.load(path or get_settings().workspace)


def use_progress(json_output: bool) -> bool:
    """Draw rich progress only for a person at a terminal."""
    return not json_output and sys.stderr.isatty() and not get_settings().no_progress


def print_json(value: Any) -> None:
    """One JSON document per line on stdout (for scripts and `jq`)."""
    sys.stdout.write(orjson.dumps(value, default=str).decode() + "\n")
    sys.stdout.flush()

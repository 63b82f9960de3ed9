"""`edgeloop journal`: read a site's event journal."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from edgeloop.cli.common import (
    WorkspaceOption,
    console,
    friendly_errors,
    load_workspace,
    print_json,
)
from edgeloop.journal import Journal, JournalEntry, open_journal

app = typer.Typer(help="Read a site's event journal.", no_args_is_help=True)


def _open(site: str | None, path: str | None, workspace: Path | None) -> Journal:
    if path:
        return open_journal(path)
    if not site:
        raise typer.BadParameter("give --site NAME (with a workspace) or --path JOURNAL.db")
    return load_workspace(workspace).journal(site)


def _show(entry: JournalEntry, as_json: bool) -> None:
    e = entry.event
    if as_json:
        print_json({"seq": entry.seq, **e.to_dict()})
    else:
        console.print(
            f"{entry.seq:>6} {e.time:%Y-%m-%d %H:%M:%S} "
            f"[cyan]{e.type:20}[/] {e.site:10} {e.subject}",
            highlight=False,
        )


@app.command()
def tail(
    site: str = typer.Option(None, "--site", "-s", help="Site whose journal to read."),
    path: str = typer.Option(None, "--path", help="A journal file or URL instead of a site."),
    n: int = typer.Option(20, "-n", help="How many of the latest events to show first."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    types: list[str] = typer.Option(
        None, "--type", "-t", help="Only events of this type (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON event per line."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Show the latest events of a site's journal, and optionally follow new ones."""
    with friendly_errors():
        journal = _open(site, path, workspace)
        after = max(0, journal.last_seq() - n)
        try:
            while True:
                entries = journal.read(after, types=types or None)
                for entry in entries:
                    _show(entry, as_json)
                    after = entry.seq
                if not follow:
                    break
                if not entries:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            journal.close()

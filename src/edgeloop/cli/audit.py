"""`edgeloop audit`: the control plane's append-only log of mutating calls."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from edgeloop.cli.common import console, friendly_errors, print_json
from edgeloop.cli.fleet import ControlOption, JsonOption, TokenFileOption, _when, control_client


def audit(
    limit: int = typer.Option(50, "-n", help="How many of the latest entries to show."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new entries."),
    as_json: bool = JsonOption,
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """Show who changed what, when and from where (admins only)."""
    with friendly_errors():
        client = control_client(control, token_file)
        entries = client.audit(after=0, limit=10_000)
        after = entries[-1]["seq"] if entries else 0
        try:
            for entry in entries[-limit:] if limit else []:
                _show(entry, as_json)
            while follow:
                time.sleep(1.0)
                for entry in client.audit(after=after, limit=1000):
                    _show(entry, as_json)
                    after = entry["seq"]
        except KeyboardInterrupt:
            pass


def _show(entry: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(entry)
        return
    status = int(entry["status"])  # type: ignore[call-overload]
    colour = "green" if status < 400 else "red"
    console.print(
        f"{entry['seq']:>6} {_when(entry['time'])} [{colour}]{status}[/] "  # type: ignore[arg-type]
        f"{entry['actor'] or '-'} ({entry['role'] or '-'}) from {entry['client'] or '-'}: "
        f"{entry['method']} {entry['path']} {entry['detail'] or ''}",
        highlight=False,
    )

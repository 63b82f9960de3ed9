"""The data-plane demo: edges write capture batches, replication copies them to the core."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgeloop.demo.synthetic import write_batches
from edgeloop.errors import ConfigError
from edgeloop.journal import JournalSink
from edgeloop.model.events import EventType
from edgeloop.replication import RichReporter, SilentReporter, replicator_for_rule
from edgeloop.replication.progress import ProgressReporter
from edgeloop.store.journaled import JournaledStore
from edgeloop.workspace import CONFIG_NAME, Tier, init_workspace


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: objects per edge, objects and events at the core, all verified."""

    written: dict[str, int]
    at_core: int
    replicated_events: int
    verified: bool


def run_foundation_demo(
    directory: Path, *, batches: int = 20, rows: int = 500, console: Console | None = None
) -> DemoResult:
    """Create a workspace, write batches at each edge, replicate them up, verify at the core."""
    out = console or Console()
    _clear_previous_demo(directory)
    ws = init_workspace(directory)
    out.print(f"[bold]1. Workspace[/] {ws.root} (core + {len(ws.sites(Tier.EDGE))} edges)")
    written: dict[str, int] = {}
    for i, edge in enumerate(ws.sites(Tier.EDGE)):
        store = JournaledStore(ws.store(edge.name), JournalSink(ws.journal(edge.name)), edge.name)
        infos = write_batches(store, edge.name, batches=batches, rows=rows, seed=i)
        written[edge.name] = len(infos)
        size = sum(x.size for x in infos)
        out.print(f"[bold]2. Capture[/] {edge.name}: {len(infos)} Parquet batches, {size:,} bytes")
    for rule in ws.rules():
        reporter: ProgressReporter = RichReporter() if out.is_terminal else SilentReporter()
        with replicator_for_rule(ws, rule, reporter=reporter) as replicator:
            snap = replicator.run_once()
        out.print(
            f"[bold]3. Replicate[/] {rule.label}: copied {snap.copied}, "
            f"skipped {snap.skipped}, failed {snap.failed}, backlog {snap.backlog}"
        )
    core = ws.store("core")
    verified = True
    for edge in ws.sites(Tier.EDGE):
        for info in ws.store(edge.name).list("captures/"):
            copy = core.head(info.key)
            verified &= copy.sha256 == info.sha256 and copy.size == info.size
    journal = ws.journal("core")
    events = journal.read(limit=100_000, types=[EventType.OBJECT_REPLICATED])
    at_core = sum(1 for _ in core.list("captures/"))
    table = Table(title="Result")
    for col in ("site", "objects", "object.replicated events"):
        table.add_column(col)
    for name, count in written.items():
        table.add_row(name, str(count), "")
    table.add_row("core", str(at_core), str(len(events)))
    out.print(table)
    status = "[green]every copy verified by SHA-256[/]" if verified else "[red]MISMATCH[/]"
    out.print(f"[bold]4. Verify[/] {status}")
    out.print(
        f"Explore: [bold]edgeloop journal tail -s core -w {ws.root}[/] (the events), "
        f"[bold]edgeloop replicate -w {ws.root} --once[/] (nothing left to copy)"
    )
    return DemoResult(written, at_core, len(events), verified)


def _clear_previous_demo(directory: Path) -> None:
    """Remove an earlier demo workspace, refusing to touch a directory that is not one."""
    if not directory.exists():
        return
    if not (directory / CONFIG_NAME).exists() and any(directory.iterdir()):
        raise ConfigError(
            f"{directory} exists and is not an edgeloop workspace; choose another --dir"
        )
    shutil.rmtree(directory)

"""`edgeloop replicate` end to end: URLs, workspace rules, site names, JSON output, status."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.journal import JournalSink
from edgeloop.model.events import EventType
from edgeloop.store import LocalStore
from edgeloop.store.journaled import JournaledStore
from edgeloop.workspace import Workspace

runner = CliRunner()


def test_urls_with_json_lines_and_status(tmp_path: Path) -> None:
    src = LocalStore(tmp_path / "src")
    for i in range(12):
        src.put(f"captures/{i}.bin", bytes([i]) * 100)
    src.put("other/skip.bin", b"x")
    args = [
        "replicate",
        "--from", f"file://{tmp_path / 'src'}",
        "--to", f"file://{tmp_path / 'dst'}",
        "--prefix", "captures/",
        "--state", str(tmp_path / "state"),
        "--json",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sum(1 for x in lines if x["event"] == "copied") == 12
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["copied"] == 12 and summary["backlog"] == 0
    assert sorted(i.key for i in LocalStore(tmp_path / "dst").list()) == sorted(
        f"captures/{i}.bin" for i in range(12)
    )
    status = runner.invoke(
        app, ["replicate", "status", "--state", str(tmp_path / "state"), "--json"]
    )
    assert status.exit_code == 0, status.output
    doc = json.loads(status.stdout)
    assert (doc["done"], doc["backlog"], doc["failed"]) == (12, 0, 0)


def test_workspace_rules_follow_the_edge_journal(workspace_dir: Path) -> None:
    ws = Workspace.load(workspace_dir)
    edge = JournaledStore(ws.store("edge-a"), JournalSink(ws.journal("edge-a")), "edge-a")
    for i in range(5):
        edge.put(f"captures/m/edge-a/{i}.parquet", b"rows" * (i + 1))
    edge.put("labels/m/edge-a/0.parquet", b"labels")
    result = runner.invoke(app, ["replicate", "-w", str(workspace_dir), "--once"])
    assert result.exit_code == 0, result.output
    core = ws.store("core")
    assert len(list(core.list("captures/"))) == 5 and len(list(core.list("labels/"))) == 1
    events = ws.journal("core").read(0, types=[EventType.OBJECT_REPLICATED])
    assert {e.event.subject for e in events} == {i.key for i in core.list()}
    assert all(e.event.site == "core" and e.event.data["source_site"] == "edge-a" for e in events)
    # Running again copies nothing and emits nothing new.
    again = runner.invoke(
        app, ["replicate", "-w", str(workspace_dir), "--rule", "edge-a-captures-up", "--json"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.splitlines()[-1])["copied"] == 0
    assert len(ws.journal("core").read(0, types=[EventType.OBJECT_REPLICATED])) == 6
    status = runner.invoke(
        app, ["replicate", "status", "-w", str(workspace_dir), "--rule", "edge-a-captures-up"]
    )
    assert status.exit_code == 0 and "done 5" in status.output


def test_site_names_with_a_workspace(workspace_dir: Path) -> None:
    ws = Workspace.load(workspace_dir)
    ws.store("edge-b").put("captures/x.bin", b"x")  # written without an event: found by listing
    result = runner.invoke(
        app, ["replicate", "-w", str(workspace_dir), "--from", "edge-b", "--to", "core", "--full"]
    )
    assert result.exit_code == 0, result.output
    assert ws.store("core").get("captures/x.bin").read() == b"x"


def test_bad_input_gives_a_clear_error(tmp_path: Path, workspace_dir: Path) -> None:
    only_from = runner.invoke(app, ["replicate", "--from", "file:///tmp/x"])
    assert only_from.exit_code != 0 and "--to" in only_from.output
    bad_rate = runner.invoke(
        app,
        ["replicate", "--from", f"file://{tmp_path}/a", "--to", f"file://{tmp_path}/b",
         "--state", str(tmp_path / "s"), "--bwlimit", "fast"],
    )  # fmt: skip
    assert bad_rate.exit_code == 1 and "bandwidth limit" in bad_rate.output
    traversal = runner.invoke(
        app,
        ["replicate", "--from", f"file://{tmp_path}/a", "--to", f"file://{tmp_path}/b",
         "--state", str(tmp_path / "s2"), "--prefix", "../etc/"],
    )  # fmt: skip
    assert traversal.exit_code == 1 and "refused" in traversal.output
    no_rule = runner.invoke(app, ["replicate", "-w", str(workspace_dir), "--rule", "nope"])
    assert no_rule.exit_code == 1 and "no replication rule" in no_rule.output
    no_ledger = runner.invoke(app, ["replicate", "status", "--state", str(tmp_path / "none")])
    assert no_ledger.exit_code == 1 and "has not run yet" in no_ledger.output

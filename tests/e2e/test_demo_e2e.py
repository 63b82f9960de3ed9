"""The demo end to end, in --fast mode, with every part real: `edgeloop core`, two edge
servers, agents and replicators as supervised processes, HTTP traffic with late labels, a
drift at edge-b. Asserted: a version registered after the drift has lineage to captures of
both edges; both edges serve it; no inference request failed during the swaps; every
acknowledged capture record at the edges is at the core exactly once."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from rich.console import Console

from edgeloop.demo.checks import request_ids_at
from edgeloop.demo.run import run_demo
from edgeloop.demo.scenario import MODEL
from edgeloop.demo.workspace import DemoSettings
from edgeloop.registry.workspace import open_registry
from edgeloop.workspace import Workspace


def edge_request_ids(root: Path, site: str) -> Counter[str]:
    """Request ids in the captures an edge's server wrote to its own store (what it
    acknowledged and uploaded)."""
    return request_ids_at(Workspace.load(root).store(site), site)


def test_fast_demo_closes_the_loop(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    result = run_demo(
        tmp_path / "demo", DemoSettings.fast_mode(duration=150), console=console, free_ports=True
    )
    text = out.getvalue()
    assert result.new_version is not None, text

    # a new version, registered after the drift, with lineage to captured data of both edges
    ws = Workspace.load(result.workspace)
    registry = open_registry(ws)
    try:
        info = registry.get(MODEL, int(result.new_version))
        captures = info.lineage.captures
        assert {c.site for c in captures} >= {"edge-a", "edge-b"}
        core = ws.store("core")
        for ref in captures:  # the lineage names real objects at the core, by their digest
            assert core.head(ref.key).sha256 == ref.sha256
        assert info.lineage.run_id and info.lineage.dataset is not None
        assert int(result.new_version) >= 2 and "champion" in registry.aliases(MODEL)
    finally:
        registry.close()

    # both edges serve it (their clients got answers from it)
    for site, traffic in result.traffic.items():
        assert result.new_version in traffic.stats.first_seen, (site, text)
        final = result.serving[site]
        assert final is not None and int(final) >= int(result.new_version)

    # no inference request failed, before, during or after the swaps
    assert all(not t.stats.failures for t in result.traffic.values()), text
    assert all(t.stats.sent == len(t.stats.ok_ids) for t in result.traffic.values())

    # every acknowledged capture at the edges is at the core exactly once
    for check in result.captures:
        assert check.ok, check
        assert check.answered > 0 and check.at_core == check.answered
    for site in ("edge-a", "edge-b"):
        at_edge = edge_request_ids(result.workspace, site)
        at_core = request_ids_at(ws.store("core"), site)
        assert at_edge and at_edge == at_core
        assert max(at_core.values()) == 1
    assert "The loop closed by itself." in text
    assert result.ok

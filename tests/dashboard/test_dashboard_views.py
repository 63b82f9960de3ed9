"""The dashboard's pure views (lineage graph, drift summaries, timeline entries) and the
timeline reader over a real SQLite journal."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edgeloop.dashboard.readers import read_timeline
from edgeloop.dashboard.views import (
    drift_plots,
    drift_summary,
    json_safe,
    lineage_graph,
    model_summary,
    timeline_entry,
    type_matches,
)
from edgeloop.journal import JournalEntry, SQLiteJournal
from edgeloop.model.events import Event

SHA = "0" * 64


def version(n: int, state: str = "registered", **lineage: Any) -> dict[str, Any]:
    return {
        "version": n,
        "state": state,
        "aliases": [],
        "lineage": lineage,
        "created": f"2026-01-0{n}T00:00:00+00:00",
        "registered": f"2026-01-0{n}T00:00:00+00:00" if state == "registered" else None,
    }


def test_lineage_graph_links_sites_datasets_runs_and_parents() -> None:
    versions = [
        version(
            1,
            run_id="r1",
            dataset={"snapshot": "s1", "rows": 10},
            captures=[{"key": "captures/m/edge-a/2026/01/01/b.parquet", "sha256": SHA}],
        ),
        version(
            2,
            parent=1,
            run_id="r2",
            captures=[
                {"key": "k1", "sha256": SHA, "site": "edge-a", "records": 5},
                {"key": "k2", "sha256": SHA, "site": "edge-b", "records": 7},
            ],
            labels=[{"key": "labels/m/edge-b/2026/01/01/l.parquet", "sha256": SHA}],
        ),
        version(3, parent=9),  # a parent the registry does not know: no dangling edge
    ]
    graph = lineage_graph("m", versions)
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds == {
        "version:1": "version", "run:r1": "run", "dataset:s1": "dataset",
        "site:edge-a": "site", "version:2": "version", "run:r2": "run",
        "site:edge-b": "site", "version:3": "version",
    }  # fmt: skip
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert edges == {
        ("run:r1", "version:1"), ("dataset:s1", "run:r1"), ("site:edge-a", "dataset:s1"),
        ("run:r2", "version:2"), ("site:edge-a", "run:r2"), ("site:edge-b", "run:r2"),
        ("version:1", "version:2"),
    }  # fmt: skip
    edge_b = next(n for n in graph["nodes"] if n["id"] == "site:edge-b")
    assert edge_b["detail"] == {"m:2": {"captures": 1, "records": 7, "labels": 1}}


def test_lineage_graph_of_a_version_without_lineage_is_one_node() -> None:
    graph = lineage_graph("m", [version(1)])
    assert graph == {
        "nodes": [
            {
                "id": "version:1",
                "kind": "version",
                "label": "m:1",
                "detail": {"state": "registered", "aliases": []},
            }
        ],
        "edges": [],
    }


def test_model_summary_counts_registered_versions_only_as_latest() -> None:
    summary = model_summary("m", [version(1), version(2), version(3, "failed")], {"champion": 1})
    assert summary["versions"] == 3 and summary["registered"] == 2
    assert summary["latest"] == 2 and summary["champion"] == 1
    assert model_summary("m", [], {})["latest"] is None


def test_drift_summary_keeps_verdicts_and_distances() -> None:
    report = {
        "model": "m", "site": "edge-a", "version": "1", "rows": 500, "status": "drift",
        "window_start": "2026-01-01T00:00:00+00:00", "window_end": "2026-01-01T01:00:00+00:00",
        "drifted": ["amount", "prediction"],
        "features": [{"name": "amount", "kind": "numeric", "status": "drift", "pvalue": 0.0,
                      "statistics": {"psi": 0.9, "ks": 0.4, "wasserstein_std": 1.1},
                      "plot": {"reference": [0.5, 0.5], "current": [0.1, 0.9],
                               "edges": [0, 1, 2], "labels": None}}],
        "prediction": {"name": "prediction", "kind": "categorical", "status": "drift",
                       "statistics": {"psi": 0.6, "js": 0.1}, "plot": None},
        "multivariate": None,
    }  # fmt: skip
    summary = drift_summary(report)
    assert summary["status"] == "drift" and summary["drifted"] == ["amount", "prediction"]
    amount, prediction = summary["features"]
    assert amount == {"name": "amount", "kind": "numeric", "status": "drift", "pvalue": 0.0,
                      "psi": 0.9, "ks": 0.4, "js": None, "wasserstein_std": 1.1}  # fmt: skip
    assert prediction["js"] == 0.1 and prediction["pvalue"] is None
    assert summary["multivariate"] is None
    (plot,) = drift_plots(report)  # the prediction has no plot
    assert plot["name"] == "amount" and plot["edges"] == [0, 1, 2]


def test_type_matches_names_and_families() -> None:
    assert type_matches("rollout.halted", ["rollout.*"])
    assert type_matches("drift.detected", ["run.*", "drift.detected"])
    assert not type_matches("rollouts.x", ["rollout.*"])
    assert not type_matches("drift.detected.more", ["drift.detected"])
    assert not type_matches("run.started", [])


def test_json_safe_turns_nan_and_infinity_into_none() -> None:
    value = {"a": [1.0, math.nan, {"b": math.inf}], "c": (2, -math.inf), "d": "x"}
    assert json_safe(value) == {"a": [1.0, None, {"b": None}], "c": [2, None], "d": "x"}


def test_timeline_entry_cuts_big_data_to_its_keys() -> None:
    small = Event(type="t", site="s", subject="x", data={"a": 1}, id="e1",
                  time=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    assert timeline_entry(JournalEntry(3, small)) == {
        "seq": 3, "id": "e1", "type": "t", "site": "s", "subject": "x",
        "time": "2026-01-01T00:00:00+00:00", "data": {"a": 1},
    }  # fmt: skip
    big = Event(type="t", site="s", subject="x", data={"z": "y" * 5000, "a": 1})
    assert timeline_entry(JournalEntry(4, big))["data"] == {"truncated": True, "keys": ["a", "z"]}


@pytest.fixture
def journal(tmp_path: Path) -> SQLiteJournal:
    journal = SQLiteJournal(tmp_path / "journal.db")
    # 2,500 events: every tenth a rollout event, the rest replication noise, so a filtered
    # read has to look through more than one chunk.
    journal.append_many(
        Event(
            type="rollout.wave" if i % 10 == 0 else "object.replicated",
            site="core",
            subject=f"s{i}",
            id=f"e{i}",
        )
        for i in range(1, 2501)
    )
    return journal


def test_timeline_reads_newest_first_and_pages_back_without_gaps(journal: SQLiteJournal) -> None:
    seen: list[int] = []
    before = None
    while True:
        page = read_timeline(journal, before=before, limit=700, types=[])
        seen += [e["seq"] for e in page["entries"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == list(range(2500, 0, -1))
    assert page["last_seq"] == 2500


def test_timeline_filter_spans_chunks(journal: SQLiteJournal) -> None:
    page = read_timeline(journal, before=None, limit=150, types=["rollout.*"])
    seqs = [e["seq"] for e in page["entries"]]
    assert seqs == list(range(2500, 1000, -10))
    rest = read_timeline(journal, before=page["next_before"], limit=1000, types=["rollout.*"])
    assert [e["seq"] for e in rest["entries"]] == list(range(1000, 0, -10))
    assert rest["next_before"] is None


def test_timeline_of_an_empty_journal_or_past_the_start(tmp_path: Path) -> None:
    empty = SQLiteJournal(tmp_path / "empty.db")
    assert read_timeline(empty, before=None, limit=10, types=[]) == {
        "entries": [],
        "last_seq": 0,
        "next_before": None,
    }
    empty.append(Event(type="t", site="s", subject="x"))
    assert read_timeline(empty, before=1, limit=10, types=[])["entries"] == []
    assert [e["seq"] for e in read_timeline(empty, before=99, limit=10, types=[])["entries"]] == [1]


def test_timeline_scan_cap_hands_back_where_to_go_on(
    journal: SQLiteJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edgeloop.dashboard.readers.MAX_TIMELINE_SCAN", 1000)
    seen: list[int] = []
    before = None
    for _ in range(10):
        page = read_timeline(journal, before=before, limit=500, types=["rollout.*"])
        seen += [e["seq"] for e in page["entries"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == list(range(2500, 0, -10))  # each capped read found its share, none lost

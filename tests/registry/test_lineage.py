"""Lineage values: validation, merging, and the text tree `models show` prints."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgeloop.registry import DatasetRef, Lineage, ObjectRef, render_lineage


def test_merge_lays_explicit_fields_over_the_base() -> None:
    base = Lineage(run_id="r1", parameters={"C": 1}, code_version="git:a")
    merged = base.merged(Lineage(run_id="r2", parent=3))
    assert (merged.run_id, merged.parent, merged.code_version) == ("r2", 3, "git:a")
    assert merged.parameters == {"C": 1}


def test_object_refs_need_a_sha256() -> None:
    with pytest.raises(ValidationError):
        ObjectRef(key="captures/x.parquet", sha256="not-a-digest")
    with pytest.raises(ValidationError):
        Lineage(parent=0)


def test_tree_lists_every_fact() -> None:
    lineage = Lineage(
        captures=[ObjectRef(key="captures/m/a.parquet", sha256="1" * 64, site="edge-a",
                            records=5)],
        labels=[ObjectRef(key="labels/m/a.parquet", sha256="2" * 64)],
        dataset=DatasetRef(snapshot="s1", key="datasets/m/s1/data.parquet", sha256="3" * 64,
                           rows=9),
        parent=1, pipeline="retrain", run_id="run-7", code_version="git:abc",
        parameters={"C": 0.5}, trigger="window-2026-01-01T00",
    )  # fmt: skip
    tree = render_lineage("m:2", lineage)
    assert tree.splitlines() == [
        "m:2",
        "├── parent: version 1",
        "├── pipeline run: run-7 (pipeline retrain)",
        "├── code version: git:abc",
        "├── parameters (1)",
        "│   └── C = 0.5",
        "├── dataset snapshot: s1",
        "│   ├── key: datasets/m/s1/data.parquet",
        "│   ├── sha256: " + "3" * 64,
        "│   └── rows: 9",
        "├── captures (1)",
        "│   └── captures/m/a.parquet sha256:" + "1" * 64 + " (site edge-a, 5 records)",
        "├── labels (1)",
        "│   └── labels/m/a.parquet sha256:" + "2" * 64,
        "└── trigger: 'window-2026-01-01T00'",
    ]


def test_empty_lineage_renders_placeholders() -> None:
    tree = render_lineage("m:1", Lineage())
    assert "pipeline run: - (pipeline -)" in tree and tree.endswith("└── labels (0)")

"""A tiny pipeline for smoke tests, docs and benchmarks: count the records of a trigger window."""

from __future__ import annotations

from typing import Any

from edgeloop.pipeline.dsl import step
from edgeloop.pipeline.graph import Pipeline


@step
def members(window: dict[str, Any]) -> list[str]:
    """The object keys in the window that triggered this run."""
    return sorted(str(m.get("key", m.get("subject", ""))) for m in window.get("members", []))


@step
def summary(members: list[str]) -> dict[str, Any]:
    """How many objects the window held, and which."""
    return {"count": len(members), "keys": members}


EXAMPLE = Pipeline.build(
    "example",
    [members, summary],
    inputs={"window": dict},
    description="Summarise the objects of a trigger window.",
)

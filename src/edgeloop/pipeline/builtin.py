"""Pipelines edgeloop ships, by name (a workspace's `pipelines:` section adds its own)."""

from __future__ import annotations

BUILTIN: dict[str, str] = {
    "example": "edgeloop.pipeline.examples:EXAMPLE",
    "retrain-tabular": "edgeloop.pipeline.retrain:RETRAIN",
}

"""Executors: `inline` (default) and `ray`, behind one interface."""

from __future__ import annotations

from edgeloop.errors import PipelineError
from edgeloop.pipeline.executors.base import Executor, StepOutcome, run_step
from edgeloop.pipeline.executors.inline import InlineExecutor


def get_executor(spec: str) -> Executor:
    """The executor `spec` names: `inline`, `ray:local`, `ray:auto` or `ray://host:port`."""
    if spec == "inline":
        return InlineExecutor()
    if spec == "ray" or spec.startswith("ray:"):
        from edgeloop.pipeline.executors.ray import RayExecutor

        address = spec.removeprefix("ray:") if spec.startswith("ray:") else "local"
        if spec.startswith("ray://"):
            address = spec
        return RayExecutor(address or "local")
    raise PipelineError(f"unknown executor {spec!r}; use inline, ray:local or ray://host:port")


__all__ = ["Executor", "InlineExecutor", "StepOutcome", "get_executor", "run_step"]

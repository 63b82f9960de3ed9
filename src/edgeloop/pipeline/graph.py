"""The pipeline graph: built from steps and validated (cycles, missing inputs, types), pure."""

from __future__ import annotations

import importlib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeloop.errors import PipelineDefinitionError
from edgeloop.pipeline.dsl import Step


def _types_compatible(produced: Any, wanted: Any) -> bool:
    """Whether a value of type `produced` may feed a parameter annotated `wanted`."""
    if produced is Any or wanted is Any or produced == wanted:
        return True
    wanted_args = typing.get_args(wanted)
    if typing.get_origin(wanted) in (typing.Union, __import__("types").UnionType):
        return any(_types_compatible(produced, arg) for arg in wanted_args)
    produced_base = typing.get_origin(produced) or produced
    wanted_base = typing.get_origin(wanted) or wanted
    if produced_base is int and wanted_base is float:
        return True  # the numeric tower: an int is a fine float
    if isinstance(produced_base, type) and isinstance(wanted_base, type):
        return issubclass(produced_base, wanted_base)
    return False


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


@dataclass(frozen=True)
class Pipeline:
    """A validated DAG of steps; `order` is a topological order that executors follow."""

    name: str
    steps: Mapping[str, Step]
    inputs: Mapping[str, Any] = field(default_factory=dict)  # run input name -> type
    order: tuple[str, ...] = ()
    description: str = ""

    @classmethod
    def build(
        cls,
        name: str,
        steps: Iterable[Step],
        *,
        inputs: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> Pipeline:
        """Build and validate a pipeline without running anything; raise on the first problem."""
        by_name: dict[str, Step] = {}
        for s in steps:
            if not isinstance(s, Step):
                raise PipelineDefinitionError(
                    f"pipeline {name!r}: {s!r} is not a step; decorate it with @step"
                )
            if s.name in by_name:
                raise PipelineDefinitionError(f"pipeline {name!r}: two steps are named {s.name!r}")
            by_name[s.name] = s
        run_inputs = dict(inputs or {})
        for clash in set(run_inputs) & set(by_name):
            raise PipelineDefinitionError(
                f"pipeline {name!r}: {clash!r} is both a run input and a step; rename one"
            )
        for s in by_name.values():
            for param, wanted in s.inputs.items():
                if param in by_name:
                    produced = by_name[param].output
                elif param in run_inputs:
                    produced = run_inputs[param]
                else:
                    raise PipelineDefinitionError(
                        f"pipeline {name!r}: step {s.name!r} reads {param!r}, which no step "
                        f"produces and is not a run input; add a step named {param!r} or "
                        "declare it in inputs="
                    )
                if not _types_compatible(produced, wanted):
                    raise PipelineDefinitionError(
                        f"pipeline {name!r}: step {s.name!r} wants {param!r} as "
                        f"{_type_name(wanted)} but it is {_type_name(produced)}"
                    )
        order = _topological_order(name, by_name)
        return cls(name, by_name, run_inputs, order, description)

    def upstream(self, step_name: str) -> list[str]:
        """The steps `step_name` reads from (not run inputs)."""
        return [p for p in self.steps[step_name].inputs if p in self.steps]

    def describe(self) -> dict[str, Any]:
        """The graph as JSON values: steps in order with their inputs and resource hints."""
        return {
            "name": self.name,
            "inputs": {k: _type_name(v) for k, v in self.inputs.items()},
            "steps": [
                {
                    "name": n,
                    "ref": self.steps[n].ref,
                    "inputs": list(self.steps[n].inputs),
                    "output": _type_name(self.steps[n].output),
                    "retries": self.steps[n].retries,
                    "cpu": self.steps[n].resources.cpu,
                    "memory_mb": self.steps[n].resources.memory_mb,
                    "gpu": self.steps[n].resources.gpu,
                }
                for n in self.order
            ],
        }


def _topological_order(name: str, steps: Mapping[str, Step]) -> tuple[str, ...]:
    """Kahn's algorithm, ties broken by definition order; a leftover means a cycle."""
    deps = {n: [p for p in s.inputs if p in steps] for n, s in steps.items()}
    remaining = {n: len(d) for n, d in deps.items()}
    readers: dict[str, list[str]] = {n: [] for n in steps}
    for n, d in deps.items():
        for p in d:
            readers[p].append(n)
    ready = [n for n in steps if remaining[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for r in readers[n]:
            remaining[r] -= 1
            if remaining[r] == 0:
                ready.append(r)
    if len(order) != len(steps):
        cycle = _find_cycle(deps, [n for n in steps if n not in order])
        raise PipelineDefinitionError(
            f"pipeline {name!r} has a cycle: {' -> '.join(cycle)}; a step cannot read its own "
            "output, even indirectly"
        )
    return tuple(order)


def _find_cycle(deps: Mapping[str, list[str]], candidates: list[str]) -> list[str]:
    """One concrete cycle among `candidates`, for the error message."""
    start = candidates[0]
    path = [start]
    seen = {start}
    node = start
    while True:
        node = next(p for p in deps[node] if p in candidates)
        if node in seen:
            return [*path[path.index(node) :], node]
        path.append(node)
        seen.add(node)


def load_pipeline(ref: str) -> Pipeline:
    """Import the pipeline a `module:attribute` reference names (a Pipeline or a factory)."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PipelineDefinitionError(
            f"{ref!r} is not a pipeline reference; use module:attribute, e.g. "
            "edgeloop.pipeline.retrain:PIPELINE"
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise PipelineDefinitionError(f"cannot import pipeline {ref!r}: {exc}") from exc
    if callable(target) and not isinstance(target, Pipeline):
        target = target()
    if not isinstance(target, Pipeline):
        raise PipelineDefinitionError(f"{ref!r} is not a Pipeline (got {type(target).__name__})")
    return target


def load_step(ref: str) -> Step:
    """Import the step a `module:qualname` reference names (how remote workers find code)."""
    module_name, _, attr = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PipelineDefinitionError(f"cannot import step {ref!r}: {exc}") from exc
    if isinstance(target, Step):
        return target
    raise PipelineDefinitionError(f"{ref!r} is not a @step function")

"""The pipeline DSL: `@step` functions whose parameters name the steps (or run inputs) they read.

Wiring is by name, Hamilton-style: a parameter `features` reads the output of the step called
`features`, or the run input of that name. Outputs are small JSON values passed inline, or
`Artifact` references to objects in the store (the bytes themselves never travel between steps).
"""

from __future__ import annotations

import hashlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeloop.errors import PipelineDefinitionError


@dataclass(frozen=True, slots=True)
class Artifact:
    """A reference to an object in the run's store: its key and the SHA-256 of its bytes."""

    key: str
    sha256: str
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The reference as JSON values (tagged so it round-trips through run records)."""
        return {"__artifact__": True, "key": self.key, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class Resources:
    """Resource hints a step asks for; executors that schedule (Ray, Kubeflow) honour them."""

    cpu: float = 1.0
    memory_mb: int | None = None
    gpu: float = 0.0


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step may ask for besides its inputs: the run id, its own name and the store."""

    run_id: str
    step: str
    store: Any = None  # an ObjectStore; typed loosely so steps stay importable without one
    attempt: int = 1

    def put_artifact(self, name: str, data: bytes) -> Artifact:
        """Write `data` under this run's artifact prefix and return a reference to it."""
        if self.store is None:
            raise PipelineDefinitionError(
                f"step {self.step!r} wrote an artifact but the run has no store; "
                "run it with a store (edgeloop pipeline run uses the core site's store)"
            )
        key = f"pipelines/runs/{self.run_id}/{self.step}/{name}"
        info = self.store.put(key, data)
        return Artifact(key=key, sha256=info.sha256, size=info.size)

    def read_artifact(self, artifact: Artifact) -> bytes:
        """The bytes an artifact points to, checked against its SHA-256."""
        data: bytes = self.store.get(artifact.key).read()
        if hashlib.sha256(data).hexdigest() != artifact.sha256:
            raise PipelineDefinitionError(
                f"artifact {artifact.key} changed since it was written; re-run the producing step"
            )
        return data


@dataclass(frozen=True)
class Step:
    """One pipeline step: a function plus its wiring (inputs by name), output type and policies."""

    name: str
    fn: Callable[..., Any]
    inputs: dict[str, Any]  # parameter name -> annotated type (Any when unannotated)
    output: Any
    wants_context: str | None = None  # the parameter that receives the StepContext
    retries: int = 0
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    cache: bool = True
    resources: Resources = field(default_factory=Resources)

    @property
    def ref(self) -> str:
        """`module:qualname`, how remote executors import the function (no pickling)."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    @property
    def code_digest(self) -> str:
        """SHA-256 of the step's source, so editing a step invalidates its cache."""
        try:
            source = inspect.getsource(self.fn)
        except (OSError, TypeError):
            source = self.ref
        return hashlib.sha256(source.encode()).hexdigest()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    backoff: float = 0.5,
    cache: bool = True,
    cpu: float = 1.0,
    memory_mb: int | None = None,
    gpu: float = 0.0,
) -> Any:
    """Make a function a pipeline step; use bare (`@step`) or with options (`@step(retries=2)`)."""

    def wrap(func: Callable[..., Any]) -> Step:
        if retries < 0 or backoff < 0:
            raise PipelineDefinitionError("retries and backoff must not be negative")
        hints = typing.get_type_hints(func)
        inputs: dict[str, Any] = {}
        context_param = None
        for param in inspect.signature(func).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise PipelineDefinitionError(
                    f"step {func.__name__}: *args/**kwargs cannot be wired; name each input"
                )
            hint = hints.get(param.name, Any)
            if hint is StepContext:
                context_param = param.name
                continue
            inputs[param.name] = hint
        return Step(
            name=name or func.__name__,
            fn=func,
            inputs=inputs,
            output=hints.get("return", Any),
            wants_context=context_param,
            retries=retries,
            backoff=backoff,
            cache=cache,
            resources=Resources(cpu=cpu, memory_mb=memory_mb, gpu=gpu),
        )

    return wrap(fn) if fn is not None else wrap

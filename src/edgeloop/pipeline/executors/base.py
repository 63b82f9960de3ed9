"""The one executor interface, and the step runner every executor shares (retries, cache)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from edgeloop.pipeline.cache import StepCache, cache_key
from edgeloop.pipeline.dsl import Step, StepContext
from edgeloop.pipeline.graph import Pipeline
from edgeloop.pipeline.runs import FAILED, SUCCEEDED, StepRecord, now_iso
from edgeloop.pipeline.values import decode, digest, encode


@dataclass(slots=True)
class StepOutcome:
    """What running one step produced: its encoded output (None on failure) and its record."""

    output: bytes | None
    record: StepRecord


def run_step(
    step: Step,
    encoded_inputs: Mapping[str, bytes],
    *,
    run_id: str,
    store: Any = None,
    cache: StepCache | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> StepOutcome:
    """Run one step on encoded inputs: cache lookup, then 1 + retries attempts with backoff."""
    started_wall, started = now_iso(), time.perf_counter()
    key = None
    if cache is not None and step.cache:
        key = cache_key(step, {n: digest(v) for n, v in encoded_inputs.items()})
        hit = cache.get(key)
        if hit is not None:
            return StepOutcome(
                hit,
                StepRecord(
                    step.name,
                    SUCCEEDED,
                    0,
                    True,
                    started_wall,
                    now_iso(),
                    time.perf_counter() - started,
                ),
            )
    kwargs = {name: decode(raw) for name, raw in encoded_inputs.items()}
    error = None
    tb = ""
    attempts = 0
    for attempt in range(1, step.retries + 2):
        attempts = attempt
        if step.wants_context:
            kwargs[step.wants_context] = StepContext(run_id, step.name, store, attempt)
        try:
            output = encode(step.fn(**kwargs), step=step.name)
        except Exception as exc:  # a step may raise anything; it is recorded, not propagated
            error = f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc(limit=5)
            if attempt <= step.retries:
                sleep(step.backoff * (2 ** (attempt - 1)))
            continue
        if key is not None:
            cache.put(key, output)  # type: ignore[union-attr]
        return StepOutcome(
            output,
            StepRecord(
                step.name,
                SUCCEEDED,
                attempts,
                False,
                started_wall,
                now_iso(),
                time.perf_counter() - started,
            ),
        )
    return StepOutcome(
        None,
        StepRecord(
            step.name,
            FAILED,
            attempts,
            False,
            started_wall,
            now_iso(),
            time.perf_counter() - started,
            f"{error}\n{tb}" if error else None,
        ),
    )


StepCallback = Callable[[StepRecord], None]


class Executor(Protocol):
    """Runs a validated pipeline's steps in dependency order and reports each step as it ends.

    Returns every successful step's encoded output; a failed step stops its downstream steps,
    which are reported as skipped.
    """

    name: str

    def execute(
        self,
        pipeline: Pipeline,
        inputs: Mapping[str, Any],
        *,
        run_id: str,
        store: Any = None,
        cache: StepCache | None = None,
        on_step: StepCallback | None = None,
    ) -> dict[str, bytes]: ...

    def close(self) -> None: ...


def step_inputs(
    pipeline: Pipeline, name: str, outputs: Mapping[str, bytes], run_inputs: Mapping[str, bytes]
) -> dict[str, bytes] | None:
    """The encoded inputs of step `name`, or None when an upstream step has no output."""
    wanted: dict[str, bytes] = {}
    for param in pipeline.steps[name].inputs:
        if param in pipeline.steps:
            if param not in outputs:
                return None
            wanted[param] = outputs[param]
        else:
            wanted[param] = run_inputs[param]
    return wanted

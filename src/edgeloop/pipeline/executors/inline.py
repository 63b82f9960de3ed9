"""The inline executor: every step in this process, one after another (the default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeloop.pipeline.cache import StepCache
from edgeloop.pipeline.executors.base import StepCallback, run_step, step_inputs
from edgeloop.pipeline.graph import Pipeline
from edgeloop.pipeline.runs import SKIPPED, StepRecord
from edgeloop.pipeline.values import encode


class InlineExecutor:
    """Runs steps in topological order in the calling process."""

    name = "inline"

    def execute(
        self,
        pipeline: Pipeline,
        inputs: Mapping[str, Any],
        *,
        run_id: str,
        store: Any = None,
        cache: StepCache | None = None,
        on_step: StepCallback | None = None,
    ) -> dict[str, bytes]:
        run_inputs = {k: encode(v, step=k) for k, v in inputs.items()}
        outputs: dict[str, bytes] = {}
        for name in pipeline.order:
            wanted = step_inputs(pipeline, name, outputs, run_inputs)
            if wanted is None:
                record = StepRecord(name, SKIPPED, error="an upstream step failed")
            else:
                outcome = run_step(
                    pipeline.steps[name], wanted, run_id=run_id, store=store, cache=cache
                )
                record = outcome.record
                if outcome.output is not None:
                    outputs[name] = outcome.output
            if on_step is not None:
                on_step(record)
        return outputs

    def close(self) -> None:
        """Nothing to release."""

"""Run a pipeline end to end: start its record, execute, record each step, finish, emit events."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from edgeloop.errors import PipelineError
from edgeloop.journal.base import EventSink
from edgeloop.model.events import Event, EventType
from edgeloop.pipeline.cache import StepCache
from edgeloop.pipeline.executors.base import Executor
from edgeloop.pipeline.graph import Pipeline
from edgeloop.pipeline.runs import FAILED, SUCCEEDED, RunRecord, RunStore, StepRecord
from edgeloop.pipeline.values import decode

log = logging.getLogger(__name__)


def run_pipeline(
    pipeline: Pipeline,
    *,
    runs: RunStore,
    executor: Executor,
    inputs: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    store: Any = None,
    cache: StepCache | None = None,
    events: EventSink | None = None,
    site: str = "core",
    trigger: str = "manual",
) -> RunRecord:
    """Run `pipeline` and return its finished record; `run_id` names an existing pending run."""
    inputs = dict(inputs or {})
    missing = set(pipeline.inputs) - set(inputs)
    if missing:
        raise PipelineError(
            f"pipeline {pipeline.name!r} needs run inputs {sorted(missing)}; pass them with "
            "--param NAME=VALUE"
        )
    if run_id is None:
        run_id = runs.create_run(
            pipeline.name, params=inputs, trigger=trigger, executor=executor.name
        )
    if not runs.start_run(run_id, executor.name):
        return runs.get_run(run_id)  # already started elsewhere: exactly-once start
    _emit(events, EventType.RUN_STARTED, site, run_id, pipeline.name, {})
    failed: list[StepRecord] = []

    def on_step(rec: StepRecord) -> None:
        runs.record_step(run_id, rec)
        if rec.state == FAILED:
            failed.append(rec)

    try:
        outputs = executor.execute(
            pipeline, inputs, run_id=run_id, store=store, cache=cache, on_step=on_step
        )
    except Exception as exc:  # an executor fault (e.g. a lost Ray cluster) fails the run cleanly
        log.exception("run %s: executor %s failed", run_id, executor.name)
        runs.finish_run(run_id, FAILED, error=f"executor {executor.name}: {exc}")
        _emit(events, EventType.RUN_FAILED, site, run_id, pipeline.name, {"error": str(exc)})
        return runs.get_run(run_id)
    if failed:
        first = failed[0]
        error = f"step {first.step} failed after {first.attempts} attempt(s): {first.error}"
        runs.finish_run(run_id, FAILED, error=error)
        _emit(
            events,
            EventType.RUN_FAILED,
            site,
            run_id,
            pipeline.name,
            {"error": error.splitlines()[0], "step": first.step},
        )
    else:
        last = pipeline.order[-1] if pipeline.order else None
        result = decode(outputs[last]) if last else None
        runs.finish_run(run_id, SUCCEEDED, outputs={"result": _jsonable(result)})
        _emit(events, EventType.RUN_SUCCEEDED, site, run_id, pipeline.name, {})
    return runs.get_run(run_id)


def _jsonable(value: Any) -> Any:
    from edgeloop.pipeline.dsl import Artifact

    if isinstance(value, Artifact):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _emit(
    sink: EventSink | None, type_: str, site: str, run_id: str, pipeline: str, data: dict[str, Any]
) -> None:
    if sink is not None:
        sink.emit(
            Event(
                type=type_,
                site=site,
                subject=f"pipelines/{pipeline}/runs/{run_id}",
                data={"run_id": run_id, "pipeline": pipeline, **data},
                id=f"{type_}:{run_id}",
            )
        )

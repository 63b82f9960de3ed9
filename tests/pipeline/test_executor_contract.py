"""One contract, run against the inline executor and a real local Ray cluster."""

from __future__ import annotations

from pathlib import Path

from tests.pipeline import steps_for_tests as s

from edgeloop.pipeline.cache import StoreCache
from edgeloop.pipeline.executors.base import Executor
from edgeloop.pipeline.runner import run_pipeline
from edgeloop.pipeline.runs import RunStore
from edgeloop.store import open_store


def test_runs_steps_in_order_with_values_inline(executor: Executor, tmp_path: Path) -> None:
    runs = RunStore(tmp_path / "runs.db")
    record = run_pipeline(s.ARITHMETIC, runs=runs, executor=executor, inputs={"n": 5})
    assert record.state == "succeeded"
    assert record.outputs == {"result": {"sum_squares": 30, "count": 5}}
    assert [x.step for x in record.steps] == ["numbers", "squares", "total"]
    assert all(x.state == "succeeded" and x.attempts == 1 for x in record.steps)
    assert runs.get_run(record.run_id).executor == executor.name


def test_artifacts_travel_by_reference(executor: Executor, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    record = run_pipeline(
        s.ARTIFACTS,
        runs=RunStore(tmp_path / "runs.db"),
        executor=executor,
        inputs={"n": 3},
        store=store,
    )
    assert record.state == "succeeded", record.error
    assert record.outputs == {"result": 768}
    keys = [o.key for o in store.list("pipelines/runs/")]
    assert keys == [f"pipelines/runs/{record.run_id}/blob/blob.bin"]


def test_retries_with_backoff_then_succeeds(executor: Executor, tmp_path: Path) -> None:
    marker = tmp_path / "calls"
    record = run_pipeline(
        s.FLAKY,
        runs=RunStore(tmp_path / "runs.db"),
        executor=executor,
        inputs={"marker": str(marker)},
    )
    assert record.state == "succeeded"
    assert record.steps[0].attempts == 3
    assert marker.read_text() == "3"


def test_failing_step_fails_run_cleanly(executor: Executor, tmp_path: Path) -> None:
    runs = RunStore(tmp_path / "runs.db")
    record = run_pipeline(s.BROKEN, runs=runs, executor=executor, inputs={"n": 7})
    assert record.state == "failed"
    assert "broken on purpose with n=7" in (record.error or "")
    assert "after 2 attempt(s)" in (record.error or "")
    states = {x.step: (x.state, x.attempts) for x in record.steps}
    assert states == {"broken": ("failed", 2), "after_broken": ("skipped", 0)}
    assert record.outputs is None


def test_cache_by_input_digest(executor: Executor, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    runs = RunStore(tmp_path / "runs.db")
    kwargs = {"runs": runs, "executor": executor, "store": store, "cache": StoreCache(store)}
    first = run_pipeline(s.ARITHMETIC, inputs={"n": 4}, **kwargs)  # type: ignore[arg-type]
    again = run_pipeline(s.ARITHMETIC, inputs={"n": 4}, **kwargs)  # type: ignore[arg-type]
    other = run_pipeline(s.ARITHMETIC, inputs={"n": 5}, **kwargs)  # type: ignore[arg-type]
    assert [x.cached for x in first.steps] == [False, False, False]
    assert [x.cached for x in again.steps] == [True, True, True]
    assert again.outputs == first.outputs
    assert [x.cached for x in other.steps] == [False, False, False]
    assert other.outputs == {"result": {"sum_squares": 30, "count": 5}}

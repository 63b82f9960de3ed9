"""Steps the pipeline tests share; importable by module path so Ray and kfp workers find them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeloop.pipeline.dsl import Artifact, StepContext, step
from edgeloop.pipeline.graph import Pipeline


@step
def numbers(n: int) -> list[int]:
    """0..n-1."""
    return list(range(n))


@step(cpu=1)
def squares(numbers: list[int]) -> list[int]:
    return [x * x for x in numbers]


@step
def total(squares: list[int], numbers: list[int]) -> dict[str, Any]:
    return {"sum_squares": sum(squares), "count": len(numbers)}


ARITHMETIC = Pipeline.build("arithmetic", [numbers, squares, total], inputs={"n": int})


@step
def blob(n: int, ctx: StepContext) -> Artifact:
    return ctx.put_artifact("blob.bin", bytes(range(256)) * n)


@step
def blob_size(blob: Artifact, ctx: StepContext) -> int:
    return len(ctx.read_artifact(blob))


ARTIFACTS = Pipeline.build("artifacts", [blob, blob_size], inputs={"n": int})


@step(retries=2, backoff=0.01)
def flaky(marker: str) -> str:
    """Fails until it has been called three times (counted in a file, so it works remotely)."""
    path = Path(marker)
    calls = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(calls))
    if calls < 3:
        raise RuntimeError(f"flaky failure {calls}")
    return f"ok after {calls}"


FLAKY = Pipeline.build("flaky", [flaky], inputs={"marker": str})


@step(retries=1, backoff=0.01)
def broken(n: int) -> int:
    raise ValueError(f"broken on purpose with n={n}")


@step
def after_broken(broken: int) -> int:
    return broken + 1


BROKEN = Pipeline.build("broken", [broken, after_broken], inputs={"n": int})


@step
def record_run(window: dict[str, Any]) -> int:
    """Appends one line per execution to $EDGELOOP_TEST_RUN_LOG, to count real executions."""
    keys = sorted(m["key"] for m in window["members"])
    with open(os.environ["EDGELOOP_TEST_RUN_LOG"], "a", encoding="utf-8") as fh:
        fh.write(window["id"] + " " + ",".join(keys) + "\n")
    return len(keys)


RECORDER = Pipeline.build("recorder", [record_run], inputs={"window": dict})


@step(name="train", retries=2, backoff=0.0)
def broken_train(validate: dict[str, Any]) -> dict[str, Any]:
    """A `train` that always fails, to replace the built-in one."""
    raise RuntimeError(f"out of memory training on {validate['rows']} rows")


def retrain_with_broken_train() -> Pipeline:
    """The built-in retraining pipeline with its `train` step replaced by `broken_train`."""
    from edgeloop.pipeline.retrain import build_retrain

    return build_retrain(replace=[broken_train])

"""The Ray executor: the same pipeline as Ray tasks, one task per step, outputs as object refs.

Workers import each step by its `module:qualname` reference and reopen the store from its URL,
so edgeloop sends Ray only names and JSON bytes. `ray:local` starts a local cluster;
`ray://host:port` or `ray:auto` connects to an existing one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from edgeloop.errors import PipelineError
from edgeloop.pipeline.cache import StepCache, StoreCache
from edgeloop.pipeline.executors.base import StepCallback, run_step
from edgeloop.pipeline.graph import Pipeline
from edgeloop.pipeline.runs import SKIPPED, StepRecord
from edgeloop.pipeline.values import encode


def _remote_step(
    ref: str,
    run_id: str,
    store_url: str | None,
    use_cache: bool,
    names: list[str],
    run_inputs: dict[str, bytes],
    *upstream: tuple[bytes | None, dict[str, Any]],
) -> tuple[bytes | None, dict[str, Any]]:
    """Body of one Ray task: import the step, gather inputs, run it with the shared step runner."""
    from edgeloop.pipeline.graph import load_step

    step = load_step(ref)
    wanted = dict(run_inputs)
    for name, (output, _record) in zip(names, upstream, strict=True):
        if output is None:
            rec = StepRecord(step.name, SKIPPED, error="an upstream step failed")
            return None, {k: getattr(rec, k) for k in rec.__slots__}
        wanted[name] = output
    store = None
    if store_url:
        from edgeloop.store import open_store

        store = open_store(store_url)
    cache = StoreCache(store) if (store is not None and use_cache) else None
    outcome = run_step(step, wanted, run_id=run_id, store=store, cache=cache)
    rec = outcome.record
    return outcome.output, {k: getattr(rec, k) for k in rec.__slots__}


class RayExecutor:
    """Submits every step as a Ray task wired by object refs; honours cpu/memory/gpu hints."""

    name = "ray"

    def __init__(self, address: str = "local", *, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise PipelineError(
                "the ray executor needs Ray; install it with `pip install 'edgeloop[ray]'`"
            ) from exc
        self._ray = ray
        self._owns_cluster = False
        if not ray.is_initialized():
            if address == "local":
                # workers import steps by module path: give them the driver's import path
                env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
                ray.init(
                    runtime_env={"env_vars": env},
                    num_cpus=num_cpus or 2,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
                self._owns_cluster = True
            else:
                ray.init(address=address, log_to_driver=False)
        self._task = ray.remote(max_retries=0)(_remote_step)

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
        ray = self._ray
        run_inputs = {k: encode(v, step=k) for k, v in inputs.items()}
        store_url = getattr(store, "url", None)
        if store_url is not None and store_url.startswith("memory://"):
            store_url = None  # a memory store lives in this process only
        refs: dict[str, Any] = {}
        for name in pipeline.order:
            step = pipeline.steps[name]
            upstream = pipeline.upstream(name)
            opts: dict[str, Any] = {"num_cpus": step.resources.cpu, "num_gpus": step.resources.gpu}
            if step.resources.memory_mb:
                opts["memory"] = step.resources.memory_mb * 1024 * 1024
            refs[name] = self._task.options(**opts).remote(
                step.ref,
                run_id,
                store_url,
                cache is not None,
                upstream,
                {p: run_inputs[p] for p in step.inputs if p in run_inputs},
                *[refs[u] for u in upstream],
            )
        outputs: dict[str, bytes] = {}
        for name in pipeline.order:  # report in order as each finishes
            output, raw = ray.get(refs[name])
            if output is not None:
                outputs[name] = output
            if on_step is not None:
                on_step(StepRecord(**raw))
        return outputs

    def close(self) -> None:
        """Shut the cluster down if this executor started it."""
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()

"""Compile a Pipeline to a Kubeflow Pipelines v2 YAML: one component per step, each running
`edgeloop pipeline step` in a container image that has edgeloop and the steps' code.

Values flow as JSON strings between components, so Kubeflow sees plain string parameters and
edgeloop keeps its own types and artifact references inside them.
"""

# no `from __future__ import annotations`: kfp reads the component signature at runtime

from pathlib import Path
from typing import Any

from edgeloop.errors import PipelineError
from edgeloop.pipeline.graph import Pipeline

MAX_UPSTREAM = 8  # the generic step component's fixed input slots


def _step_component(image: str) -> Any:
    from kfp import dsl

    @dsl.component(base_image=image)
    def edgeloop_step(
        ref: str,
        names: str,
        run_inputs: str,
        store: str,
        run_id: str,
        in0: str = "",
        in1: str = "",
        in2: str = "",
        in3: str = "",
        in4: str = "",
        in5: str = "",
        in6: str = "",
        in7: str = "",
    ) -> str:
        """Run one edgeloop step through the CLI; inputs and output are JSON text."""
        import json
        import subprocess
        import sys

        values = json.loads(run_inputs)
        slots = [in0, in1, in2, in3, in4, in5, in6, in7]
        for i, name in enumerate(n for n in names.split(",") if n):
            values[name] = json.loads(slots[i])
        extra = ["--run-id", run_id] + (["--store", store] if store else [])
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from edgeloop.cli.main import run; run()",
                "pipeline",
                "step",
                ref,
                "--inputs",
                json.dumps(values),
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"edgeloop step {ref} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    return edgeloop_step


def build_kfp_pipeline(
    pipeline: Pipeline, *, image: str = "edgeloop:latest", store_url: str = ""
) -> Any:
    """The kfp pipeline function for `pipeline` (run inputs arrive as one JSON string)."""
    try:
        from kfp import dsl
    except ImportError as exc:
        raise PipelineError(
            "compiling for Kubeflow needs the kfp SDK; `pip install 'edgeloop[kfp]'`"
        ) from exc
    for name in pipeline.order:
        if len(pipeline.upstream(name)) > MAX_UPSTREAM:
            raise PipelineError(
                f"step {name!r} reads {len(pipeline.upstream(name))} steps; Kubeflow compilation "
                f"supports at most {MAX_UPSTREAM}: group inputs in an intermediate step"
            )
    component = _step_component(image)

    @dsl.pipeline(name=pipeline.name.replace("_", "-"), description=pipeline.description or None)
    def kfp_pipeline(run_inputs: str = "{}", store: str = store_url) -> str:
        tasks: dict[str, Any] = {}
        for name in pipeline.order:
            step = pipeline.steps[name]
            upstream = pipeline.upstream(name)
            slots = {f"in{i}": tasks[u].output for i, u in enumerate(upstream)}
            task = component(
                ref=step.ref,
                names=",".join(upstream),
                run_inputs=run_inputs,
                store=store,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,  # artifacts land under this run's id
                **slots,
            )
            task.set_display_name(name)
            task.set_caching_options(step.cache)
            if step.retries:
                # KFP takes whole seconds only
                backoff = f"{max(1, round(step.backoff))}s"
                task.set_retry(num_retries=step.retries, backoff_duration=backoff)
            task.set_cpu_request(str(step.resources.cpu))
            if step.resources.memory_mb:
                task.set_memory_request(f"{step.resources.memory_mb}M")
            if step.resources.gpu:
                task.set_accelerator_limit(int(step.resources.gpu))
            tasks[name] = task
        return tasks[pipeline.order[-1]].output

    return kfp_pipeline


def compile_kubeflow(
    pipeline: Pipeline, output: Path, *, image: str = "edgeloop:latest", store_url: str = ""
) -> Path:
    """Write the KFP v2 YAML for `pipeline` to `output`; `store_url` (a pipeline parameter,
    overridable per run) is where steps write and read artifacts."""
    from kfp import compiler

    pipeline_func = build_kfp_pipeline(pipeline, image=image, store_url=store_url)
    compiler.Compiler().compile(pipeline_func, str(output))
    return output

"""`edgeloop pipeline`: run pipelines, list runs, compile for Kubeflow, run one step."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer

from edgeloop.cli.common import (
    WorkspaceOption,
    console,
    friendly_errors,
    load_workspace,
    print_json,
)
from edgeloop.errors import PipelineError

app = typer.Typer(
    help="Run pipelines, list their runs, compile them for Kubeflow.", no_args_is_help=True
)


def _params(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise PipelineError(f"--param {pair!r}: write NAME=VALUE (VALUE may be JSON)")
        try:
            out[name] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[name] = raw
    return out


@app.command("run")
def run(
    name: str = typer.Argument(
        ..., help="A pipeline from edgeloop.yaml, a built-in, or module:attr."
    ),
    executor: str = typer.Option(
        None, "--executor", "-e", help="inline, ray:local, ray://host:port"
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE run input (repeatable)."),
    site: str = typer.Option(None, "--site", help="Core site. Default: the first core site."),
    json_output: bool = typer.Option(False, "--json", help="Print the run record as JSON."),
    workspace: Path | None = WorkspaceOption,
) -> None:
    """Run a pipeline now and wait for it; exit 1 if it fails."""
    from edgeloop.pipeline.core import CorePipelines

    with friendly_errors():
        core = CorePipelines.open(load_workspace(workspace), site)
        try:
            record = core.run(name, params=_params(param), executor=executor)
        finally:
            core.close()
        if json_output:
            print_json(record.to_dict())
        else:
            _print_run(record)
        if record.state != "succeeded":
            raise typer.Exit(1)


@app.command("runs")
def runs(
    run_id: str = typer.Argument(None, help="Show one run's steps (an id or a 6+ char prefix)."),
    limit: int = typer.Option(20, "--limit", "-n"),
    site: str = typer.Option(None, "--site"),
    json_output: bool = typer.Option(False, "--json"),
    workspace: Path | None = WorkspaceOption,
) -> None:
    """List recent runs with their state and timing, or one run with each step's status."""
    from rich.table import Column, Table

    from edgeloop.pipeline.core import core_site
    from edgeloop.pipeline.runs import RunStore

    with friendly_errors():
        ws = load_workspace(workspace)
        store = RunStore(ws.state_dir(core_site(ws, site)) / "pipelines.db")
        if run_id:
            record = store.get_run(run_id)
            print_json(record.to_dict()) if json_output else _print_run(record)
            return
        records = store.list_runs(limit=limit)
        if json_output:
            for r in records:
                print_json(r.to_dict())
            return
        table = Table(
            Column("run", no_wrap=True),
            Column("pipeline", no_wrap=True),
            "state",
            Column("trigger", overflow="fold"),
            "steps",
            "seconds",
            Column("created", no_wrap=True),
        )
        for r in records:
            done = sum(s.state == "succeeded" for s in r.steps)
            secs = sum(s.seconds or 0 for s in r.steps)
            table.add_row(
                r.run_id,
                r.pipeline,
                r.state,
                r.trigger,
                f"{done}/{len(r.steps)}",
                f"{secs:.3f}",
                r.created_at[:19],
            )
        console.print(table)


def _print_run(record: object) -> None:
    from rich.table import Table

    from edgeloop.pipeline.runs import RunRecord

    assert isinstance(record, RunRecord)
    console.print(
        f"run [bold]{record.run_id}[/] of {record.pipeline}: [bold]{record.state}[/] "
        f"({record.executor}, {record.trigger})"
    )
    table = Table("step", "state", "attempts", "cached", "seconds")
    for s in record.steps:
        table.add_row(
            s.step,
            s.state,
            str(s.attempts),
            "yes" if s.cached else "",
            f"{s.seconds:.4f}" if s.seconds is not None else "",
        )
    console.print(table)
    if record.error:
        console.print(f"[red]error:[/] {record.error}", markup=True, highlight=False)


@app.command("trigger")
def trigger(
    rule: str = typer.Argument(..., help="A trigger rule's name from edgeloop.yaml."),
    window: str = typer.Option(
        None, "--window", help="Window id; firing the same id again starts nothing new."
    ),
    site: str = typer.Option(None, "--site"),
    workspace: Path | None = WorkspaceOption,
) -> None:
    """Fire a trigger rule by hand: claim a window now; `edgeloop core` starts its run."""
    from edgeloop.pipeline.core import CorePipelines

    with friendly_errors():
        core = CorePipelines.open(load_workspace(workspace), site)
        try:
            worker = core.worker()
            if rule not in {r.name for r in worker.rules}:
                raise PipelineError(
                    f"no trigger rule {rule!r}; rules: {sorted(r.name for r in worker.rules)}"
                )
            run_id = worker.fire(rule, f"{rule}:{window}" if window else None)
        finally:
            core.close()
        console.print(f"claimed run {run_id}; `edgeloop core` starts it")


@app.command("compile")
def compile_cmd(
    name: str = typer.Argument(..., help="Pipeline name or module:attr."),
    target: str = typer.Option("kubeflow", "--target", help="Only kubeflow for now."),
    output: Path = typer.Option(Path("pipeline.yaml"), "--output", "-o"),
    image: str = typer.Option("edgeloop:latest", "--image", help="Container image with edgeloop."),
    store: str = typer.Option(
        "", "--store", help="Store URL steps use for artifacts (e.g. s3://bucket/core)."
    ),
    workspace: Path | None = WorkspaceOption,
) -> None:
    """Compile a pipeline into a Kubeflow Pipelines v2 YAML, one container component per step."""
    from edgeloop.pipeline.triggers import resolve

    with friendly_errors():
        if target != "kubeflow":
            raise PipelineError(f"unknown target {target!r}; use --target kubeflow")
        try:
            configs = load_workspace(workspace).config.pipelines
        except Exception:  # compiling needs no workspace when NAME is a module:attr
            configs = {}
        from edgeloop.pipeline.compile.kubeflow import compile_kubeflow

        compile_kubeflow(resolve(name, configs), output, image=image, store_url=store)
        console.print(f"wrote {output}")


@app.command("step")
def step_cmd(
    ref: str = typer.Argument(..., help="The step as module:qualname."),
    inputs: str = typer.Option("{}", "--inputs", help="JSON object of input name -> value."),
    input_file: list[str] = typer.Option([], "--input-file", help="NAME=PATH of a JSON input."),
    output_file: Path = typer.Option(None, "--output-file", help="Write the JSON output here."),
    run_id: str = typer.Option("step", "--run-id"),
    store_url: str = typer.Option(None, "--store", help="Store URL for artifacts."),
) -> None:
    """Run one step on JSON inputs (how Kubeflow containers run edgeloop steps)."""
    from edgeloop.pipeline.executors.base import run_step
    from edgeloop.pipeline.graph import load_step
    from edgeloop.pipeline.values import encode

    with friendly_errors():
        step = load_step(ref)
        values = orjson.loads(inputs)
        for pair in input_file:
            name, _, path = pair.partition("=")
            values[name] = orjson.loads(Path(path).read_bytes())
        missing = sorted(set(step.inputs) - set(values))
        if missing:
            raise PipelineError(f"step {step.name!r} needs inputs {missing}; pass them in --inputs")
        values = {k: v for k, v in values.items() if k in step.inputs}  # run inputs it ignores
        store = None
        if store_url:
            from edgeloop.store import open_store

            store = open_store(store_url)
        outcome = run_step(
            step, {k: encode(v, step=k) for k, v in values.items()}, run_id=run_id, store=store
        )
        if outcome.output is None:
            sys.stderr.write(f"step {step.name} failed: {outcome.record.error}\n")
            raise typer.Exit(1)
        if output_file:
            output_file.parent.mkdir(parents=True, exist_ok=True)
            output_file.write_bytes(outcome.output)
        else:
            sys.stdout.write(outcome.output.decode() + "\n")

"""Pipeline benchmark: per-step overhead of the inline executor, and trigger latency.

Run: .venv/bin/python benchmarks/pipeline.py [--rounds 5] [--steps 200] [--kfp-rounds 3]

- step overhead: a chain of `--steps` trivial steps (each adds 1 to its input), run as
  (A) plain function calls, (B) the inline executor alone, (C) a whole recorded run
  (`run_pipeline`: run and step records in SQLite); rounds alternate A B C A B C. Reported as
  microseconds per step above the plain calls.
- kfp local: the same kind of steps (a 3-step chain) compiled for Kubeflow and run with kfp's
  SubprocessRunner (use_venv=False), alternating with the inline executor; ratio per step.
- trigger latency: an `edgeloop core`-style trigger worker (0.1 s poll) in a thread; an
  `object.replicated` event with min_records=1 is appended; latency = the run's started_at
  minus the append time. p50 and p99 over the samples.

Writes benchmarks/results/pipeline.json and pipeline.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_steps for kfp workers
RESULTS = Path(__file__).resolve().parent / "results"


def chain(n: int):  # type: ignore[no-untyped-def]
    from edgeloop.pipeline.dsl import step
    from edgeloop.pipeline.graph import Pipeline

    steps = []
    for i in range(n):
        param = "x" if i == 0 else f"s{i - 1}"
        ns: dict[str, object] = {}
        exec(f"def s{i}({param}: int) -> int:\n    return {param} + 1", ns)  # noqa: S102
        steps.append(step(ns[f"s{i}"]))
    return Pipeline.build("chain", steps, inputs={"x": int})


def plain(n: int) -> int:
    def inc(v: int) -> int:
        return v + 1

    v = 0
    for _ in range(n):
        v = inc(v)
    return v


def bench_overhead(rounds: int, n: int, tmp: Path) -> dict[str, object]:
    from edgeloop.pipeline.executors import InlineExecutor
    from edgeloop.pipeline.runner import run_pipeline
    from edgeloop.pipeline.runs import RunStore

    pipe = chain(n)
    ex = InlineExecutor()
    runs = RunStore(tmp / "bench-runs.db")
    a, b, c = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        assert plain(n) == n
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        ex.execute(pipe, {"x": 0}, run_id="bench")
        b.append(time.perf_counter() - t)
        t = time.perf_counter()
        rec = run_pipeline(pipe, runs=runs, executor=ex, inputs={"x": 0})
        c.append(time.perf_counter() - t)
        assert rec.outputs == {"result": n}
    pa, pb, pc = (statistics.median(x) for x in (a, b, c))
    return {
        "steps": n,
        "plain_us_per_step": pa / n * 1e6,
        "executor_us_per_step": (pb - pa) / n * 1e6,
        "recorded_run_us_per_step": (pc - pa) / n * 1e6,
    }


def bench_kfp(rounds: int, tmp: Path) -> dict[str, object] | None:
    try:
        from kfp import components, local
    except ImportError:
        return None
    import bench_steps
    from edgeloop.pipeline.compile.kubeflow import compile_kubeflow
    from edgeloop.pipeline.executors import InlineExecutor

    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
    )
    pipe = bench_steps.CHAIN3
    yaml_path = compile_kubeflow(pipe, tmp / "chain3.yaml")
    comp = components.load_component_from_file(str(yaml_path))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp / "kfp"))
    ex = InlineExecutor()
    inline, kfp_times = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        ex.execute(pipe, {"x": 0}, run_id="bench")
        inline.append(time.perf_counter() - t)
        t = time.perf_counter()
        task = comp(run_inputs=json.dumps({"x": 0}))
        kfp_times.append(time.perf_counter() - t)
        assert json.loads(task.output) == 3
    n = len(pipe.order)
    mi, mk = statistics.median(inline) / n, statistics.median(kfp_times) / n
    return {
        "steps": n,
        "inline_ms_per_step": mi * 1e3,
        "kfp_local_ms_per_step": mk * 1e3,
        "kfp_over_inline": mk / mi,
    }


def bench_trigger(samples: int, tmp: Path) -> dict[str, object]:
    from edgeloop.journal import SQLiteJournal
    from edgeloop.model.events import Event, EventType
    from edgeloop.pipeline.runs import RunStore
    from edgeloop.pipeline.triggers import TriggerWorker
    from edgeloop.workspace.config import TriggerRule

    journal = SQLiteJournal(tmp / "journal.db")
    runs = RunStore(tmp / "trigger-runs.db")
    rule = TriggerRule(name="b", pipeline="p", event="object.replicated", min_records=1)

    def start(run_id: str) -> None:
        runs.start_run(run_id)
        runs.finish_run(run_id, "succeeded")

    worker = TriggerWorker([rule], journal, runs, start, lambda r: ("p", {}, "inline"))
    stop = threading.Event()
    thread = threading.Thread(target=worker.serve, args=(stop, 0.1), daemon=True)
    thread.start()
    latencies = []
    for i in range(samples):
        appended = datetime.now(UTC)
        journal.append(
            Event(
                type=EventType.OBJECT_REPLICATED,
                site="core",
                subject=f"k{i}",
                data={"key": f"captures/m/k{i}", "sha256": str(i)},
            )
        )
        run_id = f"w-b-{i + 1}"
        while True:
            try:
                rec = runs.get_run(run_id)
            except Exception:
                rec = None
            if rec is not None and rec.started_at:
                break
            time.sleep(0.002)
        latencies.append((datetime.fromisoformat(rec.started_at) - appended).total_seconds())
        time.sleep(0.03 + (i % 7) * 0.01)  # land at different points of the poll cycle
    stop.set()
    thread.join()
    latencies.sort()
    return {
        "samples": samples,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3,
        "max_ms": latencies[-1] * 1e3,
        "poll_interval_s": 0.1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--kfp-rounds", type=int, default=3)
    parser.add_argument("--trigger-samples", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}",
            "overhead": bench_overhead(args.rounds, args.steps, tmp),
            "kfp_local": bench_kfp(args.kfp_rounds, tmp),
            "trigger": bench_trigger(args.trigger_samples, tmp),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    o, k, t = result["overhead"], result["kfp_local"], result["trigger"]
    md = [
        "| measure | value |",
        "|---|---|",
        f"| plain call, µs/step | {o['plain_us_per_step']:.2f} |",  # type: ignore[index]
        f"| inline executor overhead, µs/step | {o['executor_us_per_step']:.1f} |",  # type: ignore[index]
        f"| recorded run overhead (SQLite records), µs/step | "
        f"{o['recorded_run_us_per_step']:.1f} |",  # type: ignore[index]
    ]
    if k:
        md += [
            f"| kfp local SubprocessRunner, ms/step | {k['kfp_local_ms_per_step']:.0f} |",
            f"| inline executor, ms/step (same steps) | {k['inline_ms_per_step']:.4f} |",
            f"| kfp local / inline | {k['kfp_over_inline']:.0f}x |",
        ]
    md += [f"| trigger latency p50 / p99, ms | {t['p50_ms']:.0f} / {t['p99_ms']:.0f} |"]  # type: ignore[index]
    (RESULTS / "pipeline.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

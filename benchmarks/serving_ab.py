"""Focused serving A/B runs, reusing benchmarks/serving.py's helpers (same model, server
pinned to CPU 0, wrk on CPU 1).

  capture  capture off, capture at 100% (uploads waiting while the core is busy, the
           default), the same uploading at once (--capture-upload-defer 0), and capture with
           no batch sealed in the run (only the spool writer works): where capture's cost
           goes. Per round, each 5 s at 16 connections; the ratio is the median of per-round
           ratios to "off".
  swaps    20 hot swaps during a steady 500 req/s, repeated: p99 while swapping over
           steady p99, one figure per run (the full benchmark measures one run).
  single   single-row throughput of edgeloop against the raw reference, alternating, 4 s
           rounds at 16 connections (the full benchmark's first comparison, alone).

    .venv/bin/python benchmarks/serving_ab.py [capture|swaps|single] [--rounds N] [--server S]

Writes benchmarks/results/serving_ab-<what>.json (one file per kind of run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving as bench

HELD_BACK = ["--capture-batch-records", "10000000", "--capture-batch-seconds", "3600"]


def capture_split(work: Path, repo: Path, server: str, rounds: int) -> dict[str, Any]:
    one = bench.body_file(work, 1)

    def start(capture: bool, *extra: str) -> Callable[[], bench.Server]:
        def run() -> bench.Server:
            if not capture:
                return bench.edgeloop(work, repo, server)
            store = Path(tempfile.mkdtemp(dir=work)) / "store"
            return bench.edgeloop(work, repo, server, "--capture-to", str(store),
                                  "--capture-sample", "1.0", *extra)  # fmt: skip

        return run

    kinds = {
        "off": start(False),
        "on": start(True),  # uploads wait while the serving core is busy (the default)
        "on_upload_at_once": start(True, "--capture-upload-defer", "0"),
        "held_back": start(True, *HELD_BACK),
    }
    rps: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind, begin in kinds.items():
            handle = begin()
            try:
                bench.wrk(bench.infer_url(handle), one, 1, 16)
                rps[kind].append(bench.wrk(bench.infer_url(handle), one, 5, 16)["rps"])
            finally:
                handle.stop()
        print({k: round(v[-1]) for k, v in rps.items()}, flush=True)
    ratios = {
        k: statistics.median(a / o for a, o in zip(rps[k], rps["off"], strict=True))
        for k in kinds
        if k != "off"
    }
    return {"rps": rps, "ratio_to_off": ratios}


def swaps(work: Path, repo: Path, server: str, rounds: int) -> dict[str, Any]:
    one = bench.body_file(work, 1)
    runs = []
    for _ in range(rounds):
        result = bench.swap_run(work, repo, server, one, 15, 20)
        runs.append({
            "steady_p99_us": result["steady"]["p99_us"],
            "swapping_p99_us": result["swapping"]["p99_us"],
            "p99_ratio": result["p99_ratio"],
            "errors": result["swapping"]["errors"],
            "swaps_done": result["swapping"]["swaps_done"],
        })  # fmt: skip
        print(runs[-1], flush=True)
    ratios = [r["p99_ratio"] for r in runs]
    return {"runs": runs, "p99_ratio_median": statistics.median(ratios),
            "above_2": sum(r > 2 for r in ratios)}  # fmt: skip


def single_row(work: Path, repo: Path, server: str, rounds: int) -> dict[str, Any]:
    model = repo / "bench" / "1" / "model.onnx"
    result = bench.alternate(
        "reference", lambda: bench.reference(work, model, server),
        "edgeloop", lambda: bench.edgeloop(work, repo, server),
        bench.body_file(work, 1), rounds, 4,
    )  # fmt: skip
    print("rounds:", [round(r, 2) for r in result["ratios"]], flush=True)
    return {"ratios": result["ratios"], "ratio_median": result["ratio_median"]}


def main() -> None:
    bench.pin_to_client_cpu()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", nargs="?", choices=("capture", "swaps", "single", "both"), default="both"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="uvicorn")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `apt-get install wrk` (scripts/system-deps.sh test)")
    work = Path(tempfile.mkdtemp(prefix="edgeloop-bench-serving-ab-"))
    results: dict[str, Any] = {"server": args.server, "rounds": args.rounds}
    try:
        repo = bench.build_model(work)
        if args.what in ("capture", "both"):
            results["capture"] = capture_split(work, repo, args.server, args.rounds)
        if args.what in ("swaps", "both"):
            results["swaps"] = swaps(work, repo, args.server, args.rounds)
        if args.what == "single":
            results["single_row"] = single_row(work, repo, args.server, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    (bench.RESULTS / f"serving_ab-{args.what}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k in ("server", "rounds")}))
    if "capture" in results:
        print("capture ratio to off:", results["capture"]["ratio_to_off"])
    if "single_row" in results:
        print("single-row ratio to the reference:", results["single_row"]["ratio_median"])
    if "swaps" in results:
        print("swap p99 ratio median:", results["swaps"]["p99_ratio_median"],
              "runs above 2:", results["swaps"]["above_2"])  # fmt: skip


if __name__ == "__main__":
    main()

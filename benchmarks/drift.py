"""Drift benchmark: a full drift report over 1,000,000 rows x (20 numeric + 5 categorical)
features, beside a per-column loop over scipy.stats computing the same statistics.

Run: .venv/bin/python benchmarks/drift.py [--rounds 3] [--rows 1000000] [--no-pin]

The process pins itself to CPU 0 (like `taskset -c 0`) and keeps BLAS to one thread, so both
sides run on one core. Reference data (the training set) and the window have the same size;
three numeric and one categorical feature drift in the window.

- reference: for each numeric column scipy.stats.ks_2samp (asymptotic p-value),
  scipy.stats.wasserstein_distance and a decile PSI with numpy.histogram; for each
  categorical column numpy.unique counts, scipy.stats.chi2_contingency, a PSI and
  scipy.spatial.distance.jensenshannon. Raw reference rows in hand, no report files.
- edgeloop: `evaluate_drift` against the stored reference profile (quantile sketches,
  category counts, a 500-row sample for the MMD test), then the JSON and HTML report.
  Building the profile happens once per model version (at registration) and is timed apart.

The two alternate (A B A B ...); the figure is the median of the per-round ratio. Writes
benchmarks/results/drift.json and benchmarks/results/drift.md; exits 1 if the median report
takes more than 3 s.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core means one BLAS thread too
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from scipy import stats as sps  # noqa: E402
from scipy.spatial.distance import jensenshannon  # noqa: E402

from edgeloop.monitor.drift import evaluate_drift  # noqa: E402
from edgeloop.monitor.profile import build_profile  # noqa: E402
from edgeloop.monitor.report import render_html, report_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NUMERIC, CATEGORICAL = 20, 5
TARGET_SECONDS = 3.0
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def make_data(rows: int, seed: int, drift: bool) -> dict[str, Any]:
    """Numeric features of assorted shapes and 5 categorical ones (3 to 40 categories)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i in range(NUMERIC):
        shift = 0.3 if drift and i < 3 else 0.0
        if i % 3 == 0:
            cols[f"n{i}"] = rng.normal(shift, 1.0, rows)
        elif i % 3 == 1:
            cols[f"n{i}"] = rng.exponential(1.0 + shift, rows)
        else:
            cols[f"n{i}"] = rng.integers(0, 100, rows).astype(np.float64) + shift * 10
    for j in range(CATEGORICAL):
        k = (3, 5, 10, 20, 40)[j]
        p = np.linspace(1.0, 2.0, k)
        if drift and j == 0:
            p = p[::-1]
        values = np.array([f"c{j}_{v}" for v in range(k)])
        cols[f"c{j}"] = values[rng.choice(k, size=rows, p=p / p.sum())]
    return cols


def decile_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.histogram(ref, edges)[0] / ref.size
    c = np.histogram(cur, edges)[0] / cur.size
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def reference_report(
    ref: dict[str, Any], cur: dict[str, Any], spent: dict[str, float]
) -> dict[str, dict[str, float]]:
    """The per-column loop over scipy.stats a data scientist would write; adds the seconds
    spent on numeric and on categorical columns to `spent`."""
    out: dict[str, dict[str, float]] = {}
    for name, values in ref.items():
        started = time.perf_counter()
        kind = "numeric" if values.dtype.kind == "f" else "categorical"
        if kind == "numeric":
            ks = sps.ks_2samp(values, cur[name], method="asymp")
            out[name] = {
                "ks": float(ks.statistic),
                "ks_pvalue": float(ks.pvalue),
                "wasserstein": float(sps.wasserstein_distance(values, cur[name])),
                "psi": decile_psi(values, cur[name]),
            }
        else:
            cats_r, counts_r = np.unique(values, return_counts=True)
            cats_c, counts_c = np.unique(cur[name], return_counts=True)
            cats = np.union1d(cats_r, cats_c)
            r = np.zeros(cats.size)
            c = np.zeros(cats.size)
            r[np.searchsorted(cats, cats_r)] = counts_r
            c[np.searchsorted(cats, cats_c)] = counts_c
            chi2, pvalue, *_ = sps.chi2_contingency(np.vstack([r, c]), correction=False)
            rs, cs = np.maximum(r / r.sum(), 1e-4), np.maximum(c / c.sum(), 1e-4)
            out[name] = {
                "chi2": float(chi2),
                "chi2_pvalue": float(pvalue),
                "js": float(jensenshannon(r, c, base=2) ** 2),
                "psi": float(np.sum((cs - rs) * np.log(cs / rs))),
            }
        spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - started
    return out


def edgeloop_report(profile: Any, window: dict[str, pa.Array]) -> tuple[Any, int, int]:
    report = evaluate_drift(
        profile, window, None, site="edge-a", window_start=T0, window_end=T0 + timedelta(hours=1)
    )
    return report, len(report_json(report)), len(render_html(report))


def served_batch(rows: int, seed: int) -> bytes:
    """`rows` captures as edgeloop's serving writes them: one [1, 20] FP32 input tensor and a
    label tensor per request, as JSON text in a Parquet batch."""
    from edgeloop.serving.capture import encode_batch

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, NUMERIC)).astype(np.float32)
    start = T0.timestamp()
    records = [
        {
            "time": start + i * 3000 / rows,
            "request_id": f"r{i}",
            "model": "bench",
            "version": "1",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, NUMERIC],
                        "data": x[i].tolist()}],
            "outputs": [{"name": "label", "datatype": "INT64", "shape": [1],
                         "data": [int(x[i, 0] > 0)]}],
        }
        for i in range(rows)
    ]  # fmt: skip
    return encode_batch("captures", records, "edge-a", "b0")


def row_by_row_read(store: Any) -> int:
    """The read path before the one-pass parse: JSON decoded row by row in Python."""
    from edgeloop.monitor.captures import (
        _array,
        _first_output,
        _flatten_record,
        batch_keys,
        in_window,
        read_batch,
    )

    total = 0
    for key in batch_keys(store, "captures", "bench", "edge-a", T0, T0 + timedelta(hours=1)):
        table = in_window(read_batch(store, key), key, T0, T0 + timedelta(hours=1))
        rows = [_flatten_record(v) for v in table.column("inputs").to_pylist()]
        names = list(dict.fromkeys(k for row in rows for k in row))
        features = {k: _array([row.get(k) for row in rows]) for k in names}
        _array([_first_output(v) for v in table.column("outputs").to_pylist()])
        total += len(next(iter(features.values())))
    return total


def read_path(rows: int, rounds: int) -> dict[str, Any]:
    """Reading a window of served captures (Parquet with OIP JSON) into feature columns: the
    one-pass parse of `read_window` beside row-by-row JSON decoding, alternating."""
    import tempfile

    from edgeloop.monitor.captures import read_window
    from edgeloop.store import LocalStore

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp))
        store.put(f"captures/bench/edge-a/{T0:%Y/%m/%d}/b0.parquet", served_batch(rows, 3))
        slow, fast = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            assert row_by_row_read(store) == rows
            slow.append(time.perf_counter() - t)
            t = time.perf_counter()
            window = read_window(store, "bench", "edge-a", T0, T0 + timedelta(hours=1))
            fast.append(time.perf_counter() - t)
            assert window.rows == rows and len(window.features) == NUMERIC
    return {
        "rows": rows,
        "row_by_row_seconds": slow,
        "read_window_seconds": fast,
        "row_by_row_median_s": statistics.median(slow),
        "read_window_median_s": statistics.median(fast),
        "ratio_median": statistics.median(a / b for a, b in zip(slow, fast, strict=True)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPU 0")
    parser.add_argument(
        "--read-rows", type=int, default=200_000, help="served rows for the read-path figure"
    )
    args = parser.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})

    print(f"generating {args.rows:,} rows x ({NUMERIC} numeric + {CATEGORICAL} categorical)...")
    ref = make_data(args.rows, seed=1, drift=False)
    cur = make_data(args.rows, seed=2, drift=True)
    # edgeloop reads windows from Parquet, so it gets Arrow columns; scipy gets numpy arrays.
    window = {k: pa.array(v) for k, v in cur.items()}

    start = time.perf_counter()
    profile = build_profile("bench", "1", {k: pa.array(v) for k, v in ref.items()})
    profile_seconds = time.perf_counter() - start
    profile_bytes = len(profile.to_json())

    edgeloop_report(profile, window)  # warm-up: imports, caches
    ref_times, edge_times, ratios = [], [], []
    ref_split: list[dict[str, float]] = []
    last_ref: dict[str, dict[str, float]] = {}
    last_report = None
    for i in range(args.rounds):
        t = time.perf_counter()
        ref_split.append({})
        last_ref = reference_report(ref, cur, ref_split[-1])
        ref_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        last_report, json_bytes, html_bytes = edgeloop_report(profile, window)
        edge_times.append(time.perf_counter() - t)
        ratios.append(ref_times[-1] / edge_times[-1])
        print(f"round {i + 1}: scipy loop {ref_times[-1]:.2f} s, edgeloop {edge_times[-1]:.2f} s")

    assert last_report is not None
    by_name = {f.name: f for f in last_report.features}
    numeric = [n for n in ref if n.startswith("n")]
    ks_gap = max(abs(by_name[n].statistics["ks"] - last_ref[n]["ks"]) for n in numeric)
    # The sketch's Wasserstein error, in standard deviations of the reference (the unit the
    # drift threshold uses).
    w_gap = max(
        abs(by_name[n].statistics["wasserstein"] - last_ref[n]["wasserstein"]) / ref[n].std()
        for n in numeric
    )
    edge_median = statistics.median(edge_times)
    print(f"read path: {args.read_rows:,} served rows (OIP JSON), {args.rounds} rounds...")
    reading = read_path(args.read_rows, args.rounds)
    result = {
        "benchmark": "drift",
        "rows": args.rows,
        "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
        "rounds": args.rounds,
        "pinned_to_cpu0": not args.no_pin,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "reference_seconds": ref_times,
        "edgeloop_seconds": edge_times,
        "reference_median_s": statistics.median(ref_times),
        "reference_numeric_median_s": statistics.median(r["numeric"] for r in ref_split),
        "reference_categorical_median_s": statistics.median(r["categorical"] for r in ref_split),
        "edgeloop_median_s": edge_median,
        "ratio_median": statistics.median(ratios),
        "edgeloop_rows_per_s": args.rows / edge_median,
        "reference_rows_per_s": args.rows / statistics.median(ref_times),
        "profile_build_s": profile_seconds,
        "profile_json_bytes": profile_bytes,
        "report_json_bytes": json_bytes,
        "report_html_bytes": html_bytes,
        "drifted": last_report.drifted,
        "max_ks_gap_vs_exact": ks_gap,
        "max_wasserstein_gap_vs_exact_in_std": w_gap,
        "read_path": reading,
        "target_s": TARGET_SECONDS,
        "meets_target": edge_median <= TARGET_SECONDS,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift.json").write_text(json.dumps(result, indent=2) + "\n")
    table = "\n".join(
        [
            "| drift report, 1 core | median s | rows/s | ratio |",
            "|---|---|---|---|",
            f"| scipy.stats per-column loop | {result['reference_median_s']:.2f} | "
            f"{result['reference_rows_per_s']:,.0f} | 1.0 |",
            f"| edgeloop (report + JSON + HTML) | {edge_median:.2f} | "
            f"{result['edgeloop_rows_per_s']:,.0f} | {result['ratio_median']:.1f}x faster |",
        ]
    )
    notes = (
        f"\n\n{args.rows:,} rows x ({NUMERIC} numeric + {CATEGORICAL} categorical), "
        f"{args.rounds} alternating rounds. Profile build (once per version): "
        f"{profile_seconds:.2f} s, {profile_bytes / 1024:.0f} KiB JSON. Sketch vs exact: "
        f"KS within {ks_gap:.4f}, Wasserstein within {w_gap:.4f} reference std. "
        f"The scipy loop spent {result['reference_numeric_median_s']:.1f} s on the numeric "
        f"columns and {result['reference_categorical_median_s']:.1f} s on the categorical ones. "
        f"Drifted: {', '.join(last_report.drifted)}.\n"
        f"\nRead path ({reading['rows']:,} served rows, 20-element OIP JSON input tensors in "
        f"Parquet): read_window {reading['read_window_median_s']:.2f} s "
        f"({reading['rows'] / reading['read_window_median_s']:,.0f} rows/s), row-by-row JSON "
        f"{reading['row_by_row_median_s']:.2f} s; {reading['ratio_median']:.1f}x faster.\n"
    )
    (RESULTS / "drift.md").write_text(table + notes)
    print(table + notes)
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())

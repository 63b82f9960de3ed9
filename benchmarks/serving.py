"""Serving benchmark: edgeloop's OIP v2 server against a raw ASGI reference on the same
ASGI server and the same onnxruntime session.

Run: .venv/bin/python benchmarks/serving.py [--rounds 3] [--duration 5]

Servers run pinned to core 0 (taskset -c 0), wrk to core 1. Reference and edgeloop
alternate (A B A B ...); medians and per-round ratios are reported. Writes
benchmarks/results/serving.json and serving.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VENV_BIN = Path(sys.executable).parent
N_FEATURES = 20

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("%(body)s", "rb"); wrk.body = f:read("*a"); f:close()
%(delay)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"p50_us\\":%%d,\\"p99_us\\":%%d," ..
    "\\"non2xx\\":%%d,\\"connect\\":%%d,\\"read\\":%%d,\\"write\\":%%d,\\"timeout\\":%%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_model(work: Path) -> Path:
    """The benchmark model: a random forest (50 trees, depth 8, 20 features) as ONNX."""
    from sklearn.ensemble import RandomForestClassifier

    from edgeloop.serving import package_estimator

    rng = np.random.default_rng(0)
    x = rng.random((2000, N_FEATURES)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) + rng.normal(0, 0.2, 2000) > 1.5).astype(np.int64)
    model = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(x, y)
    repo = work / "repo"
    package_estimator(model, repo / "bench" / "1", name="bench", version=1)
    for version in range(2, 23):  # versions for the hot swap run, staged outside the repo
        package_estimator(model, work / "staging" / "bench" / str(version), name="bench",
                          version=version)  # fmt: skip
    return repo


def body_file(work: Path, rows: int) -> Path:
    data = np.random.default_rng(rows).random((rows, N_FEATURES)).round(5).tolist()
    doc = {"inputs": [{"name": "input", "shape": [rows, N_FEATURES], "datatype": "FP32",
                       "data": data}]}  # fmt: skip
    path = work / f"body-{rows}.json"
    path.write_text(json.dumps(doc))
    return path


class Server:
    """A server process pinned to core 0, killed (with its workers) on exit."""

    def __init__(self, command: list[str], port: int, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *command], env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    self.process.stderr.read().decode() if self.process.stderr else ""
                )
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code in (200, 404):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server on {port} did not start")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def reference(work: Path, model: Path, server: str) -> Server:
    port = free_port()
    script = ROOT / "benchmarks" / "support" / "serving_reference.py"
    return Server([sys.executable, str(script), str(port), server], port,
                  {"REFERENCE_MODEL": str(model)})  # fmt: skip


def edgeloop(work: Path, repo: Path, server: str, *extra: str) -> Server:
    port = free_port()
    state = Path(tempfile.mkdtemp(dir=work, prefix="state-"))
    command = [str(VENV_BIN / "edgeloop"), "serve", "--repository", str(repo), "--port",
               str(port), "--server", server, "--state-dir", str(state), "--poll-interval",
               "0.2", *extra]  # fmt: skip
    return Server(command, port, {"EDGELOOP_LOG_LEVEL": "WARNING"})


def wrk(url: str, body: Path, seconds: float, connections: int, delay_ms: float = 0) -> dict:
    script = body.with_suffix(f".{connections}.{delay_ms}.lua")
    delay = f"function delay() return {delay_ms} end" if delay_ms else ""
    script.write_text(LUA % {"body": body, "delay": delay})
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "--timeout", "5s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    result = json.loads(line.removeprefix("WRKJSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("non2xx", "connect", "read", "write", "timeout"))
    return result


def infer_url(server: Server, model_name: str = "bench") -> str:
    return f"{server.url}/v2/models/{model_name}/infer"


def alternate(label_a: str, start_a: Any, label_b: str, start_b: Any, body: Path, rounds: int,
              seconds: float, connections: int = 16) -> dict[str, Any]:  # fmt: skip
    """A B A B ...: peak throughput of each, median rps and median per-round ratio b/a."""
    runs: dict[str, list[dict]] = {label_a: [], label_b: []}
    for _ in range(rounds):
        for label, start in ((label_a, start_a), (label_b, start_b)):
            server = start()
            try:
                wrk(infer_url(server), body, 1, connections)  # warm up
                runs[label].append(wrk(infer_url(server), body, seconds, connections))
            finally:
                server.stop()
    ratios = [b["rps"] / a["rps"] for a, b in zip(runs[label_a], runs[label_b], strict=True)]
    summary = {
        label: {
            "rps_median": statistics.median(r["rps"] for r in rs),
            "p50_ms_median": statistics.median(r["p50_us"] for r in rs) / 1000,
            "p99_ms_median": statistics.median(r["p99_us"] for r in rs) / 1000,
            "errors": sum(r["errors"] for r in rs),
        }
        for label, rs in runs.items()
    }
    return {"runs": runs, "summary": summary, "ratio_median": statistics.median(ratios),
            "ratios": ratios}  # fmt: skip


def paced(server: Server, body: Path, rate: float, seconds: float, connections: int = 8) -> dict:
    """wrk with a per-connection delay so the offered rate is about `rate` req/s."""
    probe = wrk(infer_url(server), body, 1, 1)
    service_ms = probe["p50_us"] / 1000
    delay_ms = max(0.0, connections / rate * 1000 - service_ms)
    return wrk(infer_url(server), body, seconds, connections, delay_ms)


def in_process_costs(repo: Path, body: Path, iterations: int = 3000) -> dict[str, float]:
    """Per-request µs without HTTP: model call alone, reference parse+call+encode, edgeloop app."""
    import onnxruntime as ort
    import orjson

    from edgeloop.serving.app import ServingApp
    from edgeloop.serving.config import ServeConfig
    from edgeloop.serving.server import ModelServer

    raw = body.read_bytes()
    model_path = str(repo / "bench" / "1" / "model.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, sess_options=so, providers=["CPUExecutionProvider"])
    doc = orjson.loads(raw)
    x = np.asarray(doc["inputs"][0]["data"], dtype=np.float32).reshape(doc["inputs"][0]["shape"])

    def timed(fn: Any) -> float:
        for _ in range(200):
            fn()
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        return (time.perf_counter() - start) / iterations * 1e6

    def reference_call() -> None:
        d = orjson.loads(raw)
        t = d["inputs"][0]
        out = session.run(None, {"input": np.asarray(t["data"], np.float32).reshape(t["shape"])})
        orjson.dumps({"outputs": [{"data": o.reshape(-1)} for o in out]},
                     option=orjson.OPT_SERIALIZE_NUMPY)  # fmt: skip

    config = ServeConfig(repository=repo, state_dir=Path(tempfile.mkdtemp()))
    app = ServingApp(ModelServer(config), token="x" * 32)
    scope = {"type": "http", "method": "POST", "path": "/v2/models/bench/infer",
             "headers": [(b"content-length", str(len(raw)).encode())]}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def edgeloop_costs() -> float:
        await app.server.start()
        for _ in range(200):
            await app(scope, receive, send)
        start = time.perf_counter()
        for _ in range(iterations):
            await app(scope, receive, send)
        elapsed = (time.perf_counter() - start) / iterations * 1e6
        await app.server.stop()
        return elapsed

    return {
        "model_call_us": timed(lambda: session.run(None, {"input": x})),
        "reference_us": timed(reference_call),
        "edgeloop_app_us": asyncio.run(edgeloop_costs()),
    }


def server_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children (granian/uvicorn workers), in seconds."""
    total = 0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    for p in [pid, *(int(x) for x in children.stdout.split())]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_per_request(start: Any, body: Path, requests: int = 4000) -> float:
    """Server CPU µs per single request from a sequential keep-alive client. Other jobs on
    the machine stretch wall time but barely change CPU time, so this ratio is the steadiest
    estimate of the pinned server's peak throughput ratio."""
    server = start()
    try:
        url, raw = infer_url(server), body.read_bytes()
        headers = {"content-type": "application/json"}
        with httpx.Client() as client:
            for _ in range(300):
                client.post(url, content=raw, headers=headers)
            before = server_cpu_seconds(server.process.pid)
            for _ in range(requests):
                if client.post(url, content=raw, headers=headers).status_code != 200:
                    raise RuntimeError("a request failed during the CPU measurement")
            after = server_cpu_seconds(server.process.pid)
    finally:
        server.stop()
    return (after - before) / requests * 1e6


def cpu_ratios(start_a: Any, start_b: Any, body: Path, rounds: int) -> dict[str, Any]:
    """Alternating CPU-per-request rounds of two servers; ratio = a / b (b's throughput share)."""
    a_us, b_us = [], []
    for _ in range(rounds):
        a_us.append(cpu_per_request(start_a, body))
        b_us.append(cpu_per_request(start_b, body))
    ratios = [a / b for a, b in zip(a_us, b_us, strict=True)]
    return {
        "a_us": a_us,
        "b_us": b_us,
        "a_us_median": statistics.median(a_us),
        "b_us_median": statistics.median(b_us),
        "ratio_median": statistics.median(ratios),
    }


def swap_run(work: Path, repo: Path, server_kind: str, body: Path, seconds: float,
             swaps: int) -> dict[str, Any]:  # fmt: skip
    """Steady 500 req/s without swaps, then with `swaps` hot swaps spread over the run."""
    results: dict[str, Any] = {}
    for label in ("steady", "swapping"):
        run_repo = work / f"swap-{label}"
        shutil.rmtree(run_repo, ignore_errors=True)
        shutil.copytree(repo, run_repo)
        server = edgeloop(work, run_repo, server_kind)
        done: list[int] = []
        try:
            wrk(infer_url(server), body, 1, 4)
            if label == "swapping":
                thread = threading.Thread(
                    target=_swapper, args=(work, run_repo, server, swaps, seconds, done)
                )
                thread.start()
            result = paced(server, body, 500, seconds)
            if label == "swapping":
                thread.join()
        finally:
            server.stop()
        result["swaps_done"] = len(done)
        results[label] = result
    results["p99_ratio"] = results["swapping"]["p99_us"] / max(1, results["steady"]["p99_us"])
    return results


def _swapper(work: Path, repo: Path, server: Server, swaps: int, seconds: float,
             done: list[int]) -> None:  # fmt: skip
    time.sleep(1.5)  # let wrk's rate probe and ramp-up pass
    interval = (seconds - 3) / swaps
    for version in range(2, 2 + swaps):
        staged = work / "staging" / "bench" / str(version)
        target = repo / "bench" / str(version)
        shutil.copytree(staged, work / "tmp-swap")
        (work / "tmp-swap").rename(target)  # appears atomically; the watcher swaps it in
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            meta = httpx.get(f"{server.url}/v2/models/bench", timeout=5).json()
            if meta["versions"] == [str(version)]:
                done.append(version)
                break
            time.sleep(0.02)
        time.sleep(max(0.0, interval - 0.2))


def pin_to_client_cpu() -> None:
    """Run this process (and its threads: the swapper, the CPU probes) on wrk's CPU, so the
    server's CPU runs the server alone (the swapper's copies and polls used to land on it)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or CPU 1 absent
        os.sched_setaffinity(0, {1})


def main() -> None:
    pin_to_client_cpu()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--swaps", type=int, default=20)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `apt-get install wrk` (scripts/system-deps.sh test)")
    work = Path(tempfile.mkdtemp(prefix="edgeloop-bench-serving-"))
    try:
        results = run(work, args.rounds, args.duration, args.swaps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (RESULTS / "serving.md").write_text(table)
    print(table)


def run(work: Path, rounds: int, seconds: float, swaps: int) -> dict[str, Any]:
    repo = build_model(work)
    model = repo / "bench" / "1" / "model.onnx"
    one, many = body_file(work, 1), body_file(work, 64)
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    results: dict[str, Any] = {"machine": machine, "rounds": rounds, "seconds": seconds}
    print("choosing the ASGI server (edgeloop on uvicorn vs granian, single-row)", flush=True)
    results["server_choice"] = alternate(
        "uvicorn", lambda: edgeloop(work, repo, "uvicorn"),
        "granian", lambda: edgeloop(work, repo, "granian"), one, rounds, seconds,
    )  # fmt: skip
    kind = "granian" if results["server_choice"]["ratio_median"] >= 1 else "uvicorn"
    results["server"] = kind
    print(f"single-row: reference vs edgeloop on {kind}", flush=True)
    results["single_row"] = alternate(
        "reference", lambda: reference(work, model, kind),
        "edgeloop", lambda: edgeloop(work, repo, kind), one, rounds, seconds,
    )  # fmt: skip
    print("64-row requests", flush=True)
    results["rows_64"] = alternate(
        "reference", lambda: reference(work, model, kind),
        "edgeloop", lambda: edgeloop(work, repo, kind), many, rounds, seconds,
    )  # fmt: skip
    print("latency at half of edgeloop's peak rate", flush=True)
    half = results["single_row"]["summary"]["edgeloop"]["rps_median"] / 2
    half_runs = []
    for _ in range(rounds):
        server = edgeloop(work, repo, kind)
        try:
            half_runs.append(paced(server, one, half, seconds))
        finally:
            server.stop()
    results["half_peak"] = {
        "target_rps": half,
        "rps_median": statistics.median(r["rps"] for r in half_runs),
        "p50_ms_median": statistics.median(r["p50_us"] for r in half_runs) / 1000,
        "p99_ms_median": statistics.median(r["p99_us"] for r in half_runs) / 1000,
        "errors": sum(r["errors"] for r in half_runs),
    }
    print("capture at 100% vs off", flush=True)
    results["capture"] = alternate(
        "capture_off", lambda: edgeloop(work, repo, kind),
        "capture_on", lambda: edgeloop(work, repo, kind, "--capture-to",
                                       str(Path(tempfile.mkdtemp(dir=work)) / "store"),
                                       "--capture-sample", "1.0"),
        one, rounds, seconds,
    )  # fmt: skip
    print(f"{swaps} hot swaps during steady 500 req/s", flush=True)
    results["hot_swap"] = swap_run(work, repo, kind, one, max(seconds * 3, 15), swaps)
    print("server CPU per request (reference vs edgeloop; capture off vs on)", flush=True)
    results["cpu_single_row"] = cpu_ratios(
        lambda: reference(work, model, kind), lambda: edgeloop(work, repo, kind), one, rounds
    )
    results["cpu_capture"] = cpu_ratios(
        lambda: edgeloop(work, repo, kind),
        lambda: edgeloop(work, repo, kind, "--capture-to",
                         str(Path(tempfile.mkdtemp(dir=work)) / "store"),
                         "--capture-sample", "1.0"),
        one, rounds,
    )  # fmt: skip
    print("in-process cost per request", flush=True)
    results["in_process"] = in_process_costs(repo, one)
    results["targets"] = {
        "single_row_ratio>=0.8": results["single_row"]["ratio_median"] >= 0.8,
        "p99_at_half_peak<=5ms": results["half_peak"]["p99_ms_median"] <= 5.0,
        "swap_non2xx==0": results["hot_swap"]["swapping"]["errors"] == 0,
        "swap_p99_ratio<=2": results["hot_swap"]["p99_ratio"] <= 2.0,
        "capture_ratio>=0.9": results["capture"]["ratio_median"] >= 0.9,
    }
    return results


def markdown(r: dict[str, Any]) -> str:
    s, m, c, h = r["single_row"], r["rows_64"], r["capture"], r["hot_swap"]
    ip = r["in_process"]
    lines = [
        f"Server: {r['server']} (edgeloop on granian/uvicorn ratio "
        f"{r['server_choice']['ratio_median']:.2f}), {r['rounds']} rounds of {r['seconds']}s.",
        "",
        "| measure | reference | edgeloop | ratio (median of rounds) |",
        "|---|---|---|---|",
        f"| single-row req/s | {s['summary']['reference']['rps_median']:.0f} | "
        f"{s['summary']['edgeloop']['rps_median']:.0f} | {s['ratio_median']:.2f} |",
        f"| single-row p99 at peak (ms) | {s['summary']['reference']['p99_ms_median']:.2f} | "
        f"{s['summary']['edgeloop']['p99_ms_median']:.2f} | |",
        f"| 64-row req/s | {m['summary']['reference']['rps_median']:.0f} | "
        f"{m['summary']['edgeloop']['rps_median']:.0f} | {m['ratio_median']:.2f} |",
        f"| p99 at half of edgeloop's peak ({r['half_peak']['rps_median']:.0f} req/s) (ms) | | "
        f"{r['half_peak']['p99_ms_median']:.2f} | |",
        f"| capture 100% vs off, req/s | {c['summary']['capture_off']['rps_median']:.0f} (off) | "
        f"{c['summary']['capture_on']['rps_median']:.0f} (on) | {c['ratio_median']:.2f} |",
        f"| hot swap: {h['swapping']['swaps_done']} swaps at {h['swapping']['rps']:.0f} req/s, "
        f"p99 (ms) | {h['steady']['p99_us'] / 1000:.2f} (steady) | "
        f"{h['swapping']['p99_us'] / 1000:.2f} (swapping) | {h['p99_ratio']:.2f} |",
        f"| hot swap: non-2xx and socket errors | {h['steady']['errors']} | "
        f"{h['swapping']['errors']} | |",
        f"| server CPU µs/request, single row (ratio: reference/edgeloop) | "
        f"{r['cpu_single_row']['a_us_median']:.0f} | {r['cpu_single_row']['b_us_median']:.0f} | "
        f"{r['cpu_single_row']['ratio_median']:.2f} |",
        f"| server CPU µs/request, capture off / 100% (ratio: off/on) | "
        f"{r['cpu_capture']['a_us_median']:.0f} (off) | "
        f"{r['cpu_capture']['b_us_median']:.0f} (on) | "
        f"{r['cpu_capture']['ratio_median']:.2f} |",
        f"| in-process µs/request (model call alone: {ip['model_call_us']:.0f}) | "
        f"{ip['reference_us']:.0f} | {ip['edgeloop_app_us']:.0f} | "
        f"{ip['edgeloop_app_us'] / ip['reference_us']:.2f} |",
        "",
        "Targets: "
        + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in r["targets"].items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

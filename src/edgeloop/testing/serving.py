"""Builders for serving tests: small trained models, packages, and servers on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestClassifier

from edgeloop.model.manifest import MANIFEST_NAME
from edgeloop.serving import package_estimator
from edgeloop.serving.app import ServingApp
from edgeloop.serving.config import ServeConfig
from edgeloop.serving.runner import build_app

N_FEATURES = 4


def training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((120, N_FEATURES)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 1.0).astype(np.int64)


def forest(seed: int = 0, trees: int = 5) -> RandomForestClassifier:
    x, y = training_data(seed)
    return RandomForestClassifier(n_estimators=trees, max_depth=4, random_state=seed).fit(x, y)


def make_package(root: Path, name: str = "demo", version: int = 1, fmt: str = "onnx",
                 seed: int = 0) -> Path:  # fmt: skip
    """A package at root/<name>/<version> built from a small random forest."""
    path = root / name / str(version)
    package_estimator(forest(seed), path, name=name, version=version, fmt=fmt)  # type: ignore[arg-type]
    return path


def corrupt_package(root: Path, name: str, version: int, how: str) -> Path:
    """A version that must never take traffic: garbage bytes, or a warm-up that fails."""
    good = root / ".tmp-good"
    make_package(good, name, version)
    src = good / name / str(version)
    if how == "garbage":
        (src / "model.onnx").write_bytes(b"this is not an onnx model" * 10)
    elif how == "bad-warmup":  # a sample whose shape the model cannot take
        manifest = json.loads((src / MANIFEST_NAME).read_text())
        manifest["sample_input"] = {"input": [[0.0] * (N_FEATURES + 3)]}
        (src / MANIFEST_NAME).write_text(json.dumps(manifest))
    elif how == "bad-schema":  # outputs that do not match what the manifest declares
        manifest = json.loads((src / MANIFEST_NAME).read_text())
        manifest["outputs"][1]["shape"] = [-1, 7]
        (src / MANIFEST_NAME).write_text(json.dumps(manifest))
    else:
        raise ValueError(how)
    dest = root / name / str(version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.rename(dest)  # appears atomically, as a real publisher does it
    shutil.rmtree(good)
    return dest


def infer_body(rows: int = 1, request_id: str | None = None, seed: int = 1) -> dict[str, Any]:
    data = np.random.default_rng(seed).random((rows, N_FEATURES)).round(4).tolist()
    body: dict[str, Any] = {
        "inputs": [{"name": "input", "shape": [rows, N_FEATURES], "datatype": "FP32", "data": data}]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


class Doubler(BaseEstimator, TransformerMixin):
    """A custom transformer: skops must not trust its type."""

    def fit(self, x: Any, y: Any = None) -> Doubler:
        self.n_features_in_ = np.asarray(x).shape[1]
        return self

    def transform(self, x: Any) -> Any:
        return np.asarray(x) * 2


def capture_record(
    i: int, t: float, *, model: str = "demo", version: int = 2, outputs: Any = None,
    latency_ms: float = 1.5,
) -> dict[str, Any]:  # fmt: skip
    """A capture record as the server offers it: request `r<i>` at time `t`, a two-value
    input that depends on `i`, and `outputs` (default: a label array)."""
    return {
        "request_id": f"r{i}",
        "time": t,
        "model": model,
        "version": version,
        "inputs": {"input": np.array([[i, i + 0.5]], dtype=np.float32)},
        "outputs": {"label": np.array([i % 2])} if outputs is None else outputs,
        "latency_ms": latency_ms,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadServer:
    """A real uvicorn server on loopback, running the app in a background thread."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                access_log=False,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def token(self) -> str:
        return self.app.token

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def serving(config: ServeConfig) -> Iterator[ThreadServer]:
    with ThreadServer(build_app(config)) as server:
        yield server


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def metric(url: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def edgeloop_command() -> list[str]:
    return [sys.executable, "-c", "from edgeloop.cli.main import run; run()"]


def spawn_server(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`edgeloop serve ...` in its own process group (so kill -9 takes all of it)."""
    handle = open(log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(
        [*edgeloop_command(), "serve", *args], stdout=handle, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip

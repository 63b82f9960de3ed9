"""kill -9 of `edgeloop serve` with records in the spool: after a restart every acknowledged
record reaches the store exactly once."""

from __future__ import annotations

import io
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from edgeloop.testing.serving import (
    free_port,
    infer_body,
    make_package,
    metric,
    spawn_server,
    wait_for,
)


def _request_ids(store: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in (store / "captures").rglob("*.parquet"):
        ids.update(pq.read_table(io.BytesIO(path.read_bytes())).column("request_id").to_pylist())
    return ids


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start(args: list[str], log: Path, url: str) -> subprocess.Popen[bytes]:
    process = spawn_server(args, log)
    try:
        wait_for(lambda: _ready(url) or process.poll() is not None, timeout=60, interval=0.1)
    except AssertionError:
        process.kill()
        raise
    assert process.poll() is None, log.read_text()
    return process


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_kill9_with_records_in_the_spool_loses_and_doubles_nothing(
    tmp_path: Path, server: str
) -> None:
    make_package(tmp_path / "repo", "demo", 1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = tmp_path / "store"
    args = [
        "--repository",
        str(tmp_path / "repo"),
        "--state-dir",
        str(tmp_path / "state"),
        "--capture-to",
        str(store),
        "--port",
        str(port),
        "--server",
        server,
        "--capture-batch-records",
        "7",
        "--capture-upload-defer",
        "0",
    ]
    log = tmp_path / "server.log"
    first = _start([*args, "--capture-batch-seconds", "3600"], log, url)
    try:
        sent = []
        for i in range(40):
            response = httpx.post(f"{url}/v2/models/demo/infer", json=infer_body(1, f"id-{i}"))
            assert response.status_code == 200
            sent.append(response.json()["id"])
        wait_for(lambda: metric(url, "edgeloop_capture_acknowledged_total") == len(sent))
        wait_for(lambda: sum(_request_ids(store).values()) >= 35)  # 5 full batches uploaded
        assert len(list((tmp_path / "state" / "spool").rglob("*.open"))) == 1  # 5 in the spool
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = _request_ids(store)
    assert sum(before.values()) < len(sent)

    second = _start([*args, "--capture-batch-seconds", "0.2"], log, url)
    try:
        wait_for(lambda: sum(_request_ids(store).values()) >= len(sent))
        assert httpx.post(f"{url}/v2/models/demo/infer", json=infer_body()).status_code == 200
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    ids = _request_ids(store)
    assert set(sent) <= set(ids)
    assert all(ids[request_id] == 1 for request_id in sent), ids.most_common(3)

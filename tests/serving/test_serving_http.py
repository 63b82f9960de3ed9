"""The server over real HTTP: tritonclient, bad input, auth, metrics, feedback, capture."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import tritonclient.http as triton

from edgeloop.serving.config import ServeConfig
from edgeloop.testing.serving import ThreadServer, forest, infer_body, metric, serving, wait_for


def test_tritonclient_reads_metadata_readiness_and_infers(server: ThreadServer) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("demo") and client.is_model_ready("demo", "1")
    assert not client.is_model_ready("nope")
    metadata = client.get_model_metadata("demo")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    x = np.random.default_rng(3).random((5, 4)).astype(np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    wanted = [triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
    result = client.infer("demo", [tensor], outputs=wanted, request_id="t-1")
    np.testing.assert_array_equal(result.as_numpy("label"), forest().predict(x))
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), forest().predict_proba(x), atol=1e-5
    )
    response = result.get_response()
    assert response["model_version"] == "1" and response["id"] == "t-1"
    with pytest.raises(triton.InferenceServerException, match="unknown model"):
        client.infer("nope", [tensor])


def test_infer_answers_version_header_and_versioned_route(server: ThreadServer) -> None:
    response = httpx.post(f"{server.url}/v2/models/demo/versions/1/infer", json=infer_body(2))
    assert response.status_code == 200
    assert response.headers["x-model-version"] == "1"
    assert response.json()["outputs"][0]["shape"] == [2]
    other = httpx.post(f"{server.url}/v2/models/demo/versions/7/infer", json=infer_body())
    assert other.status_code == 404 and "version 7" in other.json()["error"]


@pytest.mark.parametrize(
    ("path", "content", "status"),
    [
        ("/v2/models/demo/infer", b"{oops", 400),
        (
            "/v2/models/demo/infer",
            b'{"inputs": [{"name": "input", "shape": [1, 4], '
            b'"datatype": "INT64", "data": [1, 2, 3, 4]}]}',
            400,
        ),
        (
            "/v2/models/demo/infer",
            b'{"inputs": [{"name": "input", "shape": [1, 3], '
            b'"datatype": "FP32", "data": [1, 2, 3]}]}',
            400,
        ),
        ("/v2/models/demo/infer", b'{"inputs": []}', 400),
        (
            "/v2/models/demo/infer",
            b'{"inputs": [{"name": "input", "shape": [1, 4], '
            b'"datatype": "FP32", "data": [[[[1, 2, 3, 4]]]]}]}',
            400,
        ),
        ("/v2/models/demo/infer", b"[" * 100_000 + b"]" * 100_000, 413),
        ("/v2/models/demo/infer", b'{"inputs":' + b"[" * 3000 + b"]" * 3000 + b"}", 400),
        ("/v2/models/nope/infer", b"{}", 404),
        ("/v2/models/demo/versions/x1/infer", b"{}", 400),
        ("/v2/nothing/here", b"{}", 404),
    ],
)
def test_bad_requests_get_4xx_with_an_error_body_and_the_server_stays_up(
    server: ThreadServer, path: str, content: bytes, status: int
) -> None:
    response = httpx.post(
        server.url + path, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.post(f"{server.url}/v2/models/demo/infer", json=infer_body()).status_code == 200


def test_a_model_failing_on_a_request_gets_500_and_the_next_request_is_served(
    server: ThreadServer,
) -> None:
    batcher = server.app.server.slots["demo"].active.batcher  # type: ignore[union-attr]
    predict = batcher.predict

    def fail_once(inputs: dict[str, Any]) -> dict[str, Any]:
        batcher.predict = predict
        raise RuntimeError("the runtime failed")

    batcher.predict = fail_once
    url = f"{server.url}/v2/models/demo/infer"
    failed = httpx.post(url, json=infer_body())
    assert failed.status_code == 500 and failed.json() == {"error": "internal error: RuntimeError"}
    assert httpx.post(url, json=infer_body()).status_code == 200
    assert server.app._in_flight == 0  # the failed request gave its slot back
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'edgeloop_requests_total{model="demo",status="500"} 1.0' in metrics


def test_oversized_streamed_body_without_length_is_refused(server: ThreadServer) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b" " * 4096

    response = httpx.post(f"{server.url}/v2/models/demo/infer", content=chunks())
    assert response.status_code == 413


def test_wrong_method_is_405(server: ThreadServer) -> None:
    response = httpx.get(f"{server.url}/v2/models/demo/infer")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_repository_api_needs_the_token(server: ThreadServer) -> None:
    url = f"{server.url}/v2/repository/index"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert httpx.get(f"{server.url}/v2/status").status_code == 401
    index = httpx.post(url, headers=server.admin()).json()
    assert index == [{"name": "demo", "version": "1", "state": "READY", "reason": ""}]
    status = httpx.get(f"{server.url}/v2/status", headers=server.admin()).json()
    assert status["models"]["demo"]["active_version"] == 1


def test_token_file_is_private(config: ServeConfig, server: ThreadServer) -> None:
    path = config.resolved_token_file
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == server.token


def test_unload_and_load_through_the_api(server: ThreadServer) -> None:
    base = f"{server.url}/v2/repository/models/demo"
    assert httpx.post(f"{base}/unload", headers=server.admin()).status_code == 200
    assert httpx.post(f"{server.url}/v2/models/demo/infer", json=infer_body()).status_code == 503
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200  # unloaded on purpose
    loaded = httpx.post(f"{base}/load", headers=server.admin(), json={"parameters": {"version": 1}})
    assert loaded.json() == {"name": "demo", "version": "1", "state": "READY"}
    assert httpx.post(f"{server.url}/v2/models/demo/infer", json=infer_body()).status_code == 200
    missing = httpx.post(
        f"{base}/load", headers=server.admin(), json={"parameters": {"version": 9}}
    )
    assert missing.status_code == 400 and "version 9" in missing.json()["error"]


def test_metrics_count_requests_errors_and_loaded_versions(server: ThreadServer) -> None:
    for _ in range(3):
        httpx.post(f"{server.url}/v2/models/demo/infer", json=infer_body())
    httpx.post(f"{server.url}/v2/models/demo/infer", content=b"{")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'edgeloop_requests_total{model="demo",status="200"} 3.0' in text
    assert 'edgeloop_requests_total{model="demo",status="400"} 1.0' in text
    assert 'edgeloop_model_loaded{model="demo",version="1"} 1.0' in text
    assert metric(server.url, "edgeloop_request_seconds_count") == 3
    assert metric(server.url, "edgeloop_batch_rows_count") == 3
    assert "edgeloop_capture_spool_bytes" in text


def test_captures_and_feedback_reach_the_store(config: ServeConfig, server: ThreadServer) -> None:
    ids = [f"req-{i}" for i in range(4)]
    for request_id in ids:
        response = httpx.post(f"{server.url}/v2/models/demo/infer", json=infer_body(1, request_id))
        assert response.json()["id"] == request_id
    feedback = httpx.post(
        f"{server.url}/v2/models/demo/feedback",
        json={"labels": [{"request_id": i, "label": 1} for i in ids[:2]]},
    )
    assert feedback.json() == {"accepted": 2}
    bad = httpx.post(f"{server.url}/v2/models/demo/feedback", json={"label": 1})
    assert bad.status_code == 400
    store = Path(str(config.capture_to))

    def rows(prefix: str) -> list[dict]:  # type: ignore[type-arg]
        found = []
        for path in (store / prefix).rglob("*.parquet"):
            found.extend(pq.read_table(io.BytesIO(path.read_bytes())).to_pylist())
        return found

    wait_for(lambda: len(rows("captures")) == 4 and len(rows("labels")) == 2)
    captured = rows("captures")
    assert sorted(r["request_id"] for r in captured) == ids
    assert {r["model"] for r in captured} == {"demo"} and {r["version"] for r in captured} == {"1"}
    assert sorted(r["request_id"] for r in rows("labels")) == ids[:2]


def test_body_limit_is_configurable(tmp_path: Path, repo: Path) -> None:
    config = ServeConfig(repository=repo, state_dir=tmp_path / "s", max_body_bytes=2048)
    with serving(config) as running:
        big = infer_body(rows=100)
        assert httpx.post(f"{running.url}/v2/models/demo/infer", json=big).status_code == 413
        small = infer_body(rows=2)
        assert httpx.post(f"{running.url}/v2/models/demo/infer", json=small).status_code == 200
        feedback = httpx.post(
            f"{running.url}/v2/models/demo/feedback", json={"request_id": "x", "label": 1}
        )
        assert feedback.status_code == 503  # no capture store configured


def test_requests_above_the_in_flight_limit_get_503_with_retry_after(
    tmp_path: Path, repo: Path
) -> None:
    import socket

    config = ServeConfig(repository=repo, state_dir=tmp_path / "s", max_in_flight=2)
    with serving(config) as running:
        slow = []
        for _ in range(2):  # clients that send headers and never finish the body
            sock = socket.create_connection(("127.0.0.1", running.port))
            sock.sendall(
                b"POST /v2/models/demo/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            slow.append(sock)
        url = f"{running.url}/v2/models/demo/infer"
        refused = wait_for(
            lambda: (r := httpx.post(url, json=infer_body())).status_code == 503 and r
        )
        assert refused.headers["retry-after"] == "1" and "capacity" in refused.json()["error"]
        for sock in slow:
            sock.close()
        wait_for(lambda: httpx.post(url, json=infer_body()).status_code == 200)


def test_site_in_a_workspace_captures_to_its_store_and_journals_batches(
    workspace_dir: Path, repo: Path
) -> None:
    from edgeloop.workspace import Workspace

    ws = Workspace.load(workspace_dir)
    site = ws.sites(tier=None)[-1].name
    config = ServeConfig(
        repository=repo,
        site=site,
        state_dir=ws.state_dir(site) / "serving",
        capture_to=str(ws.root / ws.site(site).store),
        journal=ws.journal_url(site),
        capture_batch_seconds=0.1,
        capture_upload_defer=0,
    )
    with serving(config) as running:
        httpx.post(f"{running.url}/v2/models/demo/infer", json=infer_body(1, "ws-1"))
        journal = ws.journal(site)
        events = wait_for(lambda: journal.read(types=["object.created"]))
    key = events[0].event.subject
    assert key.startswith(f"captures/demo/{site}/") and key.endswith(".parquet")
    assert (ws.root / ws.site(site).store / key).is_file()

"""Hot swap under steady load over real HTTP: zero failed requests, bad versions never serve."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from edgeloop.serving.config import ServeConfig
from edgeloop.testing.serving import (
    ThreadServer,
    corrupt_package,
    infer_body,
    make_package,
    metric,
    serving,
    wait_for,
)


class Load:
    """Client threads posting inference requests until stopped; every status is kept."""

    def __init__(self, url: str, clients: int = 3) -> None:
        self.url = url
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, index: int) -> None:
        body = infer_body(rows=1 + index)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/v2/models/demo/infer", json=body)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.versions[response.headers["x-model-version"]] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        wait_for(lambda: sum(self.statuses.values()) > 20)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def served(self) -> int:
        with self._lock:
            return sum(self.statuses.values())


def _status(server: ThreadServer) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{server.url}/v2/status", headers=server.admin()).json()["models"]["demo"]


def _swaps(server: ThreadServer, repo: Path, versions: range, load: Load) -> None:
    for version in versions:
        if version % 2:  # odd versions appear in the repository directory, even ones via the API
            make_package(repo, "demo", version, seed=version)
        else:
            make_package(repo.parent / "staging", "demo", version, seed=version)
            (repo.parent / "staging" / "demo" / str(version)).rename(repo / "demo" / str(version))
            response = httpx.post(
                f"{server.url}/v2/repository/models/demo/load", headers=server.admin(), timeout=60
            )
            assert response.status_code == 200, response.text
        wait_for(lambda v=version: _status(server)["active_version"] == v)
        before = load.served()
        wait_for(lambda b=before: load.served() > b + 5)  # traffic flows on the new version


def _run_swaps(config: ServeConfig, repo: Path, swaps: int) -> None:
    with serving(config) as server, Load(server.url) as load:
        _swaps(server, repo, range(2, 2 + swaps), load)
    assert load.errors == []
    assert set(load.statuses) == {200}, load.statuses
    assert set(load.versions) >= {"1", str(1 + swaps)}


def test_swaps_under_load_fail_no_request(config: ServeConfig, repo: Path) -> None:
    _run_swaps(config, repo, swaps=4)


@pytest.mark.slow
def test_twenty_swaps_under_load_fail_no_request(config: ServeConfig, repo: Path) -> None:
    _run_swaps(config, repo, swaps=20)


@pytest.mark.parametrize("how", ["garbage", "bad-warmup", "bad-schema"])
def test_a_bad_version_never_takes_traffic(config: ServeConfig, repo: Path, how: str) -> None:
    with serving(config) as server, Load(server.url) as load:
        corrupt_package(repo, "demo", 2, how)
        wait_for(lambda: _status(server)["swaps_failed"] >= 1)
        status = _status(server)
        assert status["active_version"] == 1
        assert status["last_swap"]["ok"] is False and status["last_swap"]["error"]
        assert metric(server.url, 'edgeloop_swaps_total{model="demo",result="failed"}') >= 1
        before = load.served()
        wait_for(lambda: load.served() > before + 20)
        # the failure is not retried on every scan, and the API reports it too
        response = httpx.post(
            f"{server.url}/v2/repository/models/demo/load",
            headers=server.admin(),
            json={"parameters": {"version": 2}},
        )
        assert response.status_code == 400 and response.json()["error"]
        index = httpx.post(f"{server.url}/v2/repository/index", headers=server.admin()).json()
        assert {"name": "demo", "version": "1", "state": "READY", "reason": ""} in index
        # a good version after the bad one still goes live
        make_package(repo, "demo", 3, seed=3)
        wait_for(lambda: _status(server)["active_version"] == 3)
    assert load.errors == []
    assert set(load.statuses) == {200}, load.statuses
    assert "2" not in load.versions

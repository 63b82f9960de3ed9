"""Worker processes of one server follow each other's load API calls through the shared pins
file: the version pinned, unloaded, or unpinned (the newest again)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from edgeloop.serving import priority
from edgeloop.serving.config import ServeConfig
from edgeloop.serving.pins import read_pins, reset_pins, write_pin
from edgeloop.serving.server import ModelServer
from edgeloop.testing.serving import free_port, infer_body, make_package, spawn_server, wait_for


def test_pins_written_by_concurrent_workers_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    threads = [threading.Thread(target=write_pin, args=(path, f"m{i}", i)) for i in range(1, 21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert read_pins(path) == {f"m{i}": i for i in range(1, 21)}
    write_pin(path, "m1", None)
    write_pin(path, "m2", None, unpin=True)
    pins = read_pins(path)
    assert pins["m1"] is None and "m2" not in pins
    reset_pins(path)
    assert read_pins(path) == {}


def test_a_damaged_pins_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    for raw in (b"{not json", b"[1, 2]", b'{"a": "3", "b": true, "c": 4}'):
        path.write_bytes(raw)
        assert read_pins(path) in ({}, {"c": 4})


def test_a_second_server_on_the_same_state_follows_the_first(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_package(repo, "demo", 1)
    make_package(repo, "demo", 2)
    config = ServeConfig(repository=repo, state_dir=tmp_path / "state", poll_interval=3600)

    async def scenario() -> None:
        first, second = ModelServer(config), ModelServer(config)
        await first.start()
        await second.start()
        try:
            assert second.slots["demo"].active.version == 2  # type: ignore[union-attr]
            await first.load("demo", 1)  # pinned through the API of the first
            await second.follow_pins()
            assert second.slots["demo"].active.version == 1  # type: ignore[union-attr]
            await second.sync_repository()  # pinned: the newest does not take over
            assert second.slots["demo"].active.version == 1  # type: ignore[union-attr]
            await first.unload("demo")
            await second.follow_pins()
            assert second.slots["demo"].active is None
            await first.load("demo")  # no version: unpinned, the newest again
            await second.follow_pins()
            await second.sync_repository()
            assert second.slots["demo"].active.version == 2  # type: ignore[union-attr]
            assert second.pinned == {}
            # A third worker started now serves what the others do.
            await first.load("demo", 1)
            third = ModelServer(config)
            await third.start()
            assert third.slots["demo"].active.version == 1  # type: ignore[union-attr]
            await third.stop()
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())


def test_a_pin_read_before_a_load_is_not_applied_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeloop.serving.server as server_module

    repo = tmp_path / "repo"
    for version in (1, 2, 3):
        make_package(repo, "demo", version)
    config = ServeConfig(repository=repo, state_dir=tmp_path / "state", poll_interval=3600)
    read = threading.Event()
    release = threading.Event()

    def slow_read(path: Path) -> dict[str, int | None]:
        pins = read_pins(path)  # read now, returned later: stale by then without the lock
        read.set()
        release.wait(10)
        return pins

    async def scenario() -> None:
        server = ModelServer(config)
        await server.start()
        try:
            await server.load("demo", 1)
            monkeypatch.setattr(server_module, "read_pins", slow_read)
            follow = asyncio.create_task(server.follow_pins())
            await asyncio.to_thread(read.wait, 10)
            load = asyncio.create_task(server.load("demo", 2))  # the API, meanwhile
            await asyncio.sleep(0.1)
            release.set()
            await follow
            await load
            assert server.slots["demo"].active.version == 2  # type: ignore[union-attr]
            monkeypatch.setattr(server_module, "read_pins", read_pins)
            await server.follow_pins()
            assert server.slots["demo"].active.version == 2  # type: ignore[union-attr]
        finally:
            await server.stop()

    asyncio.run(scenario())


def _status(url: str, token: str) -> dict[str, object]:
    # A new connection each time, so the kernel may hand it to either worker.
    with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
        response = client.get(f"{url}/v2/status", headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        return dict(response.json())


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_every_worker_of_a_multi_process_server_serves_the_version_loaded(
    tmp_path: Path, server: str
) -> None:
    repo = tmp_path / "repo"
    make_package(repo, "demo", 1)
    make_package(repo, "demo", 2)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    state = tmp_path / "state"
    log = tmp_path / "serve.log"
    args = ["--repository", str(repo), "--state-dir", str(state), "--port", str(port),
            "--server", server, "--workers", "2", "--poll-interval", "0.2"]  # fmt: skip
    (state).mkdir()
    write_pin(state / "pins.json", "demo", 1)  # left by an earlier run: a new run starts clean
    process = spawn_server(args, log)
    try:
        wait_for(lambda: _answers(url) or process.poll() is not None, timeout=60)
        assert process.poll() is None, log.read_text()
        token = (state / "serving-token").read_text().strip()
        seen: dict[int, object] = {}

        def every_worker_on(version: int) -> bool:
            status = _status(url, token)
            seen[int(status["pid"])] = status["models"]["demo"]["active_version"]  # type: ignore[index]
            return len(seen) >= 2 and all(v == version for v in seen.values())

        wait_for(lambda: every_worker_on(2), timeout=60)
        response = httpx.post(
            f"{url}/v2/repository/models/demo/load",
            json={"parameters": {"version": 1}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        seen.clear()
        wait_for(lambda: every_worker_on(1), timeout=60)
        with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
            for _ in range(10):
                answer = client.post(f"{url}/v2/models/demo/infer", json=infer_body())
                assert answer.headers["x-model-version"] == "1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_versions_load_on_a_low_priority_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeloop.serving.server as server_module

    make_package(tmp_path / "repo", "demo", 1)
    seen: list[tuple[str, int]] = []
    real = server_module.prepare_version

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(
            (
                threading.current_thread().name,
                os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
            )
        )
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(server_module, "prepare_version", spy)
    config = ServeConfig(
        repository=tmp_path / "repo", state_dir=tmp_path / "state", poll_interval=3600
    )

    async def scenario() -> None:
        server = ModelServer(config)
        await server.start()
        try:
            assert server.slots["demo"].active is not None
        finally:
            await server.stop()

    asyncio.run(scenario())
    assert seen and seen[0][0].startswith("edgeloop-load")
    assert seen[0][1] == priority.BACKGROUND_NICE

"""`edgeloop core` and `edgeloop pipeline` as real processes: kill -9 between claim and start."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeloop.journal import SQLiteJournal
from edgeloop.model.events import Event, EventType

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
project: demo
sites:
  - name: edge-1
    tier: edge
    store: stores/edge-1
  - name: core
    tier: core
    store: stores/core
pipelines:
  recorder:
    ref: tests.pipeline.steps_for_tests:RECORDER
triggers:
  - name: batches
    pipeline: recorder
    event: object.replicated
    prefix: captures/churn/
    min_records: 3
"""


def workspace(tmp_path: Path) -> Path:
    (tmp_path / "edgeloop.yaml").write_text(CONFIG)
    return tmp_path


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "EDGELOOP_TEST_RUN_LOG": str(tmp_path / "executions.log"),
        **extra,
    }


def edgeloop(*args: str) -> list[str]:
    return [sys.executable, "-c", "from edgeloop.cli.main import run; run()", *args]


def replicate(ws: Path, keys: list[str]) -> None:
    journal = SQLiteJournal(ws / "state" / "core" / "journal.db")
    journal.append_many(
        Event(
            type=EventType.OBJECT_REPLICATED,
            site="core",
            subject=k,
            data={"key": k, "sha256": "s-" + k, "size": 1, "source_site": "edge-1"},
        )
        for k in keys
    )
    journal.close()


def run_states(ws: Path) -> list[tuple[str, str]]:
    path = ws / "state" / "core" / "pipelines.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT run_id, state FROM runs ORDER BY run_id").fetchall()
        except sqlite3.OperationalError:
            return []


def wait_for(predicate, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "edgeloop core exited early"
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_kill_9_between_claim_and_start_runs_once(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    replicate(ws, [f"captures/churn/edge-1/b{i}.parquet" for i in range(3)])
    # the first core claims the window, then pauses before starting it: kill -9 it there
    first = subprocess.Popen(
        edgeloop("core", "-w", str(ws), "--no-control"),
        cwd=ws,
        env=env(tmp_path, EDGELOOP_PIPELINE_PAUSE_AFTER_CLAIM="60"),
    )
    try:
        wait_for(lambda: run_states(ws) == [("w-batches-1", "pending")], first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not (tmp_path / "executions.log").exists()
    # events keep arriving twice while the core is down
    replicate(ws, [f"captures/churn/edge-1/b{i}.parquet" for i in range(3)])
    second = subprocess.Popen(
        edgeloop("core", "-w", str(ws), "--no-control"), cwd=ws, env=env(tmp_path)
    )
    try:
        wait_for(lambda: run_states(ws) == [("w-batches-1", "succeeded")], second)
        time.sleep(0.5)  # a few more passes: nothing else may start
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    lines = (tmp_path / "executions.log").read_text().splitlines()
    assert lines == [
        "batches:1 " + ",".join(f"captures/churn/edge-1/b{i}.parquet" for i in range(3))
    ]
    assert run_states(ws) == [("w-batches-1", "succeeded")]
    journal = SQLiteJournal(ws / "state" / "core" / "journal.db")
    types = [e.event.type for e in journal.read(0, types=["run.started", "run.succeeded"])]
    assert types == ["run.started", "run.succeeded"]


def test_pipeline_run_and_runs_cli(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    out = subprocess.run(
        edgeloop(
            "pipeline",
            "run",
            "tests.pipeline.steps_for_tests:ARITHMETIC",
            "-p",
            "n=4",
            "-w",
            str(ws),
            "--json",
        ),
        cwd=ws,
        env=env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"sum_squares":14' in out.stdout
    listed = subprocess.run(
        edgeloop("pipeline", "runs", "-w", str(ws)),
        cwd=ws,
        env=env(tmp_path, COLUMNS="160"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "arithmetic" in listed.stdout and "succeeded" in listed.stdout and "3/3" in listed.stdout
    failed = subprocess.run(
        edgeloop(
            "pipeline", "run", "tests.pipeline.steps_for_tests:BROKEN", "-p", "n=1", "-w", str(ws)
        ),
        cwd=ws,
        env=env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1
    assert "broken on purpose" in failed.stdout
    missing = subprocess.run(
        edgeloop("pipeline", "run", "tests.pipeline.steps_for_tests:ARITHMETIC", "-w", str(ws)),
        cwd=ws,
        env=env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "needs run inputs ['n']" in missing.stderr


def test_pipeline_step_cli_runs_one_step(tmp_path: Path) -> None:
    out = subprocess.run(
        edgeloop(
            "pipeline",
            "step",
            "tests.pipeline.steps_for_tests:squares",
            "--inputs",
            '{"numbers": [1, 2, 3]}',
        ),
        env=env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[1,4,9]"


@pytest.mark.parametrize("name", ["example"])
def test_builtin_example_pipeline_runs(tmp_path: Path, name: str) -> None:
    ws = workspace(tmp_path)
    out = subprocess.run(
        edgeloop(
            "pipeline",
            "run",
            name,
            "-w",
            str(ws),
            "--json",
            "-p",
            'window={"members": [{"key": "b"}, {"key": "a"}]}',
        ),
        cwd=ws,
        env=env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"keys":["a","b"]' in out.stdout


def test_manual_trigger_cli_then_core_once(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    config = ws / "edgeloop.yaml"
    config.write_text(
        config.read_text() + "  - name: by-hand\n    pipeline: example\n    event: manual\n"
    )
    for _ in range(2):  # the same window twice: one run
        subprocess.run(
            edgeloop("pipeline", "trigger", "by-hand", "--window", "t1", "-w", str(ws)),
            cwd=ws,
            env=env(tmp_path),
            check=True,
            capture_output=True,
        )
    subprocess.run(
        edgeloop("core", "--once", "-w", str(ws)),
        cwd=ws,
        env=env(tmp_path),
        check=True,
        capture_output=True,
    )
    assert run_states(ws) == [("w-by-hand-t1", "succeeded")]
    bad = subprocess.run(
        edgeloop("pipeline", "trigger", "nope", "-w", str(ws)),
        cwd=ws,
        env=env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "no trigger rule 'nope'" in bad.stderr

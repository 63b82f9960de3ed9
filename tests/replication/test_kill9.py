"""kill -9 of a real replicator process at random (seeded) moments, then a clean run: every
object arrives once, byte-identical, with exactly one object.replicated event, and no torn
object is ever visible at the target."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from replication_doubles import Source

from edgeloop.journal import SQLiteJournal
from edgeloop.model.events import EventType
from edgeloop.store import LocalStore


def _digests(store: LocalStore) -> dict[str, str]:
    out = {}
    for info in store.list():
        with store.get(info.key) as reader:
            out[info.key] = hashlib.sha256(reader.read()).hexdigest()
    return out


def _command(tmp_path: Path, *, fsync: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edgeloop.cli.replicate",
        "--from",
        f"file://{tmp_path / 'source'}",
        "--to",
        f"file://{tmp_path / 'target'}" + ("" if fsync else "?fsync=0"),
        "--source-journal",
        str(tmp_path / "source-journal.db"),
        "--events-journal",
        str(tmp_path / "core-journal.db"),
        "--state",
        str(tmp_path / "state"),
        "--transfers",
        "4",
        "--json",
        "--once",
    ]


def _write(source: Source, rng: random.Random, keys: range) -> dict[str, str]:
    expected = {}
    for i in keys:
        # Sizes from tiny to a few chunks, so kills land inside multi-chunk writes too.
        size = rng.choice([10, 4096, 65536, 300_000, 2_500_000])
        key = f"captures/m/{i:06d}.bin"
        info = source.writer.put(key, rng.randbytes(size))
        expected[key] = info.sha256 or ""
    return expected


def _visible_count(root: Path) -> int:
    """Objects at a directory target, without reading them (cheap enough to poll)."""
    count = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".edgeloop")]
        count += len(filenames)
    return count


def run_with_kills(
    tmp_path: Path, source: Source, *, objects: int, kills: int, seed: int, fsync: bool = False
) -> None:
    rng = random.Random(seed)
    expected = _write(source, rng, range(objects))
    target = LocalStore(tmp_path / "target", create=True)
    env = {**os.environ, "EDGELOOP_NO_PROGRESS": "1"}
    killed = 0
    attempts = 0
    progress = []
    # A run may finish before its kill on a quiet machine; it then simply gets more work.
    while killed < kills and attempts < kills * 10:
        attempts += 1
        proc = subprocess.Popen(
            _command(tmp_path, fsync=fsync),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        # Kill at a random moment: half the time a random delay after it opened its ledger
        # (anywhere from planning to copying), half the time once a random number of new
        # objects has appeared at the target (certainly in the middle of copying).
        ledger = tmp_path / "state" / "ledger.db"
        deadline = time.monotonic() + 30
        while not ledger.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            wanted = _visible_count(target.root) + rng.randint(1, 15)
            while (
                _visible_count(target.root) < wanted
                and proc.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(30)
        # Whatever is visible at the target at any time is whole and right.
        seen = _digests(target)
        assert all(expected[key] == digest for key, digest in seen.items())
        progress.append(len(seen))
        # The edge keeps producing: new objects (and events) arrive between runs.
        expected.update(_write(source, rng, range(len(expected), len(expected) + 30)))
    final = subprocess.run(
        _command(tmp_path, fsync=fsync), capture_output=True, env=env, timeout=300
    )
    assert final.returncode == 0, final.stderr.decode()
    assert killed == kills, f"only {killed} kills landed in {attempts} runs"
    # The kills really cut copies short: some left the job partly done.
    assert any(0 < n < len(expected) for n in progress), progress
    assert _digests(target) == expected
    visible = {
        p.relative_to(target.root).as_posix()
        for p in target.root.rglob("*")
        if p.is_file() and not p.relative_to(target.root).as_posix().startswith(".edgeloop")
    }
    assert visible == set(expected)  # no stray temp or partial files among the objects
    core = SQLiteJournal(tmp_path / "core-journal.db")
    events = core.read(0, limit=100_000, types=[EventType.OBJECT_REPLICATED])
    per_key = Counter(e.event.subject for e in events)
    assert per_key == Counter(dict.fromkeys(expected, 1))
    assert all(e.event.data["sha256"] == expected[e.event.subject] for e in events)


def test_kill9_three_times_then_resume(tmp_path: Path, source: Source) -> None:
    run_with_kills(tmp_path, source, objects=150, kills=3, seed=11)


def test_kill9_three_times_into_a_target_that_fsyncs(tmp_path: Path, source: Source) -> None:
    # Copy processes then commit groups (one syncfs, renames) in a second thread.
    run_with_kills(tmp_path, source, objects=150, kills=3, seed=13, fsync=True)


@pytest.mark.slow
def test_kill9_twenty_times_then_resume(tmp_path: Path, source: Source) -> None:
    run_with_kills(tmp_path, source, objects=600, kills=20, seed=12)


def test_sigterm_stops_follow_cleanly_and_a_later_run_finishes(
    tmp_path: Path, source: Source
) -> None:
    rng = random.Random(5)
    expected = _write(source, rng, range(120))
    target = LocalStore(tmp_path / "target", create=True)
    env = {**os.environ, "EDGELOOP_NO_PROGRESS": "1"}
    follow = [a if a != "--once" else "--follow" for a in _command(tmp_path)]
    proc = subprocess.Popen(follow, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while _visible_count(target.root) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    final = subprocess.run(_command(tmp_path), capture_output=True, env=env, timeout=300)
    assert final.returncode == 0, final.stderr.decode()
    assert _digests(target) == expected
    events = SQLiteJournal(tmp_path / "core-journal.db").read(
        0, limit=10_000, types=[EventType.OBJECT_REPLICATED]
    )
    assert Counter(e.event.subject for e in events) == Counter(dict.fromkeys(expected, 1))

"""Copy processes between two directory stores (workers.py): the wire, the directories a
worker leaves for its replicator to sync, the replicator on spawned and forked workers, a
worker killed mid-run, and no worker left behind by a replicator that exits or is killed."""

from __future__ import annotations

import errno
import gc
import io
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from replication_doubles import Source, target_objects

import edgeloop.replication.replicator as replicator_module
import edgeloop.store.local as local_module
import edgeloop.store.syncfs as syncfs_module
from edgeloop.errors import ChecksumMismatch, ObjectNotFound, StoreError
from edgeloop.replication import Ledger, MemorySink, ReplicationOptions, Replicator
from edgeloop.replication.copier import NOT_ATTEMPTED, CopyOutcome, is_outage
from edgeloop.replication.ledger import LedgerEntry
from edgeloop.replication.plan import CopyTask
from edgeloop.replication.replicator import GROUP_MAX_BYTES, PROCESS_MIN_OBJECTS
from edgeloop.replication.workers import (
    CopyWorkerError,
    _Stager,
    decode_answer,
    decode_tasks,
    encode_answer,
    encode_tasks,
    local_pair,
    serve,
)
from edgeloop.store import LocalStore, MemoryStore
from edgeloop.store.local import StagedPut
from edgeloop.testing.serving import wait_for


def test_tasks_and_results_cross_the_wire_unchanged() -> None:
    tasks = [CopyTask("a/1.bin", 10, "ab" * 32, True), CopyTask('q"uote\\d/é', 0, None)]
    assert decode_tasks(encode_tasks(tasks)) == tasks
    outcome = CopyOutcome("a/1.bin", 10, "ab" * 32, "cd" * 32, skipped=True)
    gone = CopyOutcome("b", 3, None, None, gone=True)
    results, unsynced = decode_answer(
        encode_answer(
            [
                outcome,
                gone,
                NOT_ATTEMPTED,
                ChecksumMismatch("a/1.bin: expected x, got y"),
                ObjectNotFound("b"),
                OSError(errno.ENOSPC, "No space left on device"),
                FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"),
                RuntimeError("boom"),
            ],
            ["/store/a", "/store/a/b"],
        )
    )
    assert unsynced == ["/store/a", "/store/a/b"]
    assert results[:3] == [outcome, gone, NOT_ATTEMPTED]
    checksum, missing, full, no_file, other = results[3:]
    assert isinstance(checksum, ChecksumMismatch) and "expected x" in str(checksum)
    assert isinstance(missing, ObjectNotFound)
    # An errno travels, so a full disk still reads as an outage (pause, not a bad object).
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC and is_outage(full)
    assert isinstance(no_file, FileNotFoundError) and "/x" in str(no_file)
    assert not is_outage(no_file)
    assert isinstance(other, CopyWorkerError) and str(other) == "RuntimeError: boom"


def test_a_worker_names_the_directories_to_sync_and_syncs_none_itself(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(local_module, "_fsync_dir", lambda path: synced.append(Path(path)))
    written = source.write(3, prefix="captures/m/a/") | source.write(2, prefix="captures/n/")
    target = LocalStore(tmp_path / "target")
    tasks = [CopyTask(info.key, info.size, info.sha256) for info in source.store.list()]
    requests = io.BytesIO(encode_tasks(tasks[:3]) + encode_tasks(tasks[3:]))
    answers = io.BytesIO()
    serve(requests, answers, source.store, target, os.getppid())

    assert synced == []  # the replicator syncs, once per batch of every worker's groups
    lines = answers.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        results, unsynced = decode_answer(line)
        for outcome in results:
            assert isinstance(outcome, CopyOutcome)
            assert str((target.root / outcome.key).parent) in unsynced
    assert target_objects(target) == written


def test_groups_are_answered_in_order_and_committed_with_one_syncfs_each_at_most(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups copied while others commit are committed together: one syncfs for all of
    them, no fsync of any object, and still one answer per group, in request order."""
    flushes: list[int] = []
    monkeypatch.setattr(syncfs_module, "syncfs", flushes.append)  # counted, not run
    monkeypatch.setattr(syncfs_module, "available", lambda: True)
    part_fsyncs: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            part_fsyncs.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    written = source.write(12)
    tasks = [CopyTask(info.key, info.size, info.sha256) for info in source.store.list()]
    groups = [tasks[i : i + 3] for i in range(0, 12, 3)]
    answers = io.BytesIO()
    target = LocalStore(tmp_path / "target")
    serve(io.BytesIO(b"".join(map(encode_tasks, groups))), answers, source.store, target,
          os.getppid())  # fmt: skip
    lines = answers.getvalue().splitlines()
    assert [[r.key for r in decode_answer(line)[0]] for line in lines] == [
        [t.key for t in group] for group in groups
    ]
    assert 1 <= len(flushes) <= 4 and part_fsyncs == []
    assert target_objects(target) == written


def test_a_worker_whose_answers_cannot_go_out_stops_and_leaves_no_temp_file(
    source: Source, tmp_path: Path
) -> None:
    """The first answer fails (the replicator is gone); groups copied after that, whether
    queued for the committer or refused by it, leave no temp file behind."""
    failed = threading.Event()

    class Gone(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            failed.set()
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    source.write(12)
    tasks = [CopyTask(info.key, info.size, info.sha256) for info in source.store.list()]

    def requests() -> Iterator[bytes]:
        yield encode_tasks(tasks[:2])
        assert failed.wait(timeout=30)
        for i in range(2, 12, 2):  # copied while, and after, the committer stops
            yield encode_tasks(tasks[i : i + 2])

    target = LocalStore(tmp_path / "target")
    with pytest.raises(BrokenPipeError):
        serve(requests(), Gone(), source.store, target, os.getppid())  # type: ignore[arg-type]
    assert os.listdir(target.root / ".edgeloop-tmp") == []


def test_a_stage_of_a_copy_that_then_failed_is_dropped(tmp_path: Path) -> None:
    view = LocalStore(tmp_path / "target").deferring_sync()
    stager = _Stager(view)
    kept = stager.put("a.bin", b"a")
    stager.put("b.bin", b"b")
    outcome = CopyOutcome("a.bin", kept.size, kept.sha256, kept.sha256)
    staged = stager.take([outcome, ChecksumMismatch("b.bin: changed")])
    assert [s.info.key for s in staged] == ["a.bin"]
    assert view.commit_together(staged) == [kept]
    assert [i.key for i in view.list()] == ["a.bin"]
    assert os.listdir(view.root / ".edgeloop-tmp") == []


def test_the_replicator_refuses_directories_outside_its_target(tmp_path: Path) -> None:
    view = LocalStore(tmp_path / "target").deferring_sync()
    with pytest.raises(StoreError, match="outside the store"):
        view.add_unsynced([str(tmp_path / "elsewhere")])
    with pytest.raises(StoreError, match="outside the store"):
        view.add_unsynced([str(tmp_path / "target-sibling")])
    view.add_unsynced([str(view.root), str(view.root / "a")])
    assert view.take_unsynced() == [str(view.root), str(view.root / "a")]


@pytest.mark.parametrize("syncfs", ["off", "failing"])
def test_a_copy_whose_commit_fails_is_answered_with_that_error(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: str
) -> None:
    """One object's fsync fails: that copy alone fails, whether the target fsyncs each object
    (`syncfs=0`) or a group's syncfs fails first and each object is fsynced instead."""
    written = source.write(4)
    doomed = sorted(written)[1]
    real_fsync = os.fsync
    committed_by_syncfs: list[int] = []

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") in doomed_temp:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    doomed_temp: set[str] = set()
    real_stage = LocalStore.stage

    def stage(store: LocalStore, key: str, *args: object, **kwargs: object) -> StagedPut:
        staged = real_stage(store, key, *args, **kwargs)  # type: ignore[arg-type]
        if key == doomed:
            doomed_temp.add(staged.tmp)
        return staged

    def broken_syncfs(fd: int) -> None:
        committed_by_syncfs.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(LocalStore, "stage", stage)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(syncfs_module, "syncfs", broken_syncfs)
    # fsyncs: commits run behind the copies
    target = LocalStore(tmp_path / "target", syncfs=syncfs != "off")
    tasks = [CopyTask(info.key, info.size, info.sha256) for info in source.store.list()]
    answers = io.BytesIO()
    serve(io.BytesIO(encode_tasks(tasks)), answers, source.store, target, os.getppid())
    results, _unsynced = decode_answer(answers.getvalue())
    by_key = dict(zip(sorted(written), results, strict=True))
    failed = by_key.pop(doomed)
    assert isinstance(failed, OSError) and failed.errno == errno.EIO and is_outage(failed)
    assert all(isinstance(r, CopyOutcome) for r in by_key.values())
    assert set(target_objects(target)) == set(by_key)
    assert os.listdir(target.root / ".edgeloop-tmp") == []  # the failed one's temp is gone
    if syncfs == "off":
        assert committed_by_syncfs == []


def test_serve_stops_when_its_parent_is_gone(source: Source, tmp_path: Path) -> None:
    source.write(2)
    target = LocalStore(tmp_path / "target")
    tasks = [CopyTask(info.key, info.size, info.sha256) for info in source.store.list()]
    answers = io.BytesIO()
    serve(io.BytesIO(encode_tasks(tasks)), answers, source.store, target, parent=-1)
    assert answers.getvalue() == b""
    assert target_objects(target) == {}


def test_only_two_directory_stores_make_a_pair(tmp_path: Path) -> None:
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    assert local_pair(a, b) == (a, b)
    assert local_pair(a, MemoryStore()) is None


def _replicator(
    source: Source, target: LocalStore, state: Path, sink: MemorySink, **options: object
) -> Replicator:
    state.mkdir(parents=True, exist_ok=True)
    return Replicator(
        source.store, target, Ledger(state / "ledger.db"), sink,
        source_journal=source.journal, target_site="core",
        options=ReplicationOptions(**options),  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize("fsync", [True, False])
def test_the_replicator_copies_in_processes_between_directories(
    source: Source, tmp_path: Path, fsync: bool
) -> None:
    written = source.write(150, size=3000)
    target = LocalStore(tmp_path / "target", fsync=fsync)
    sink = MemorySink()
    rep = _replicator(source, target, tmp_path, sink, transfers=3, processes=3)
    with rep:
        snap = rep.run_once()
        assert rep._processes is not None and len(rep._processes.workers) == 3
        pids = rep._processes.pids
    assert snap.copied == 150 and snap.failed == 0
    assert target_objects(target) == written
    assert rep.ledger.counts().done == 150
    assert len(sink.events) == 150
    assert not any(_running(pid) for pid in pids)  # close() reaped every worker


def test_a_replicator_dropped_without_close_stops_its_processes(
    source: Source, tmp_path: Path
) -> None:
    written = source.write(100, size=2000)
    target = LocalStore(tmp_path / "target")
    rep = _replicator(source, target, tmp_path, MemorySink(), transfers=2, processes=2)
    assert rep.run_once().copied == 100
    assert rep._processes is not None
    pids = rep._processes.pids
    assert all(_running(pid) for pid in pids)  # idle between passes, until closed
    del rep
    gc.collect()
    assert not any(_running(pid) for pid in pids)
    assert target_objects(target) == written


def test_no_processes_for_a_bandwidth_limit_or_one_transfer(source: Source, tmp_path: Path) -> None:
    source.write(5)
    choices = ({"bwlimit": 10e6, "processes": 2}, {"transfers": 1}, {"processes": 0})
    for i, options in enumerate(choices):
        target = LocalStore(tmp_path / f"target-{i}")
        state = tmp_path / f"state-{i}"
        rep = _replicator(source, target, state, MemorySink(), **options)
        with rep:
            assert rep.run_once().copied == 5
            assert rep._processes is None


def test_processes_only_for_enough_small_objects_and_large_ones_in_threads(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_threads: list[str] = []
    real = replicator_module.copy_batch

    def record(source_store, target_store, tasks, *args):  # type: ignore[no-untyped-def]
        in_threads.extend(t.key for t in tasks)
        return real(source_store, target_store, tasks, *args)

    monkeypatch.setattr(replicator_module, "copy_batch", record)
    few = source.write(PROCESS_MIN_OBJECTS - 1, prefix="few/")
    target = LocalStore(tmp_path / "target", fsync=False)
    rep = _replicator(source, target, tmp_path / "a", MemorySink(), transfers=2, processes=2)
    with rep:
        assert rep.run_once().copied == len(few)
        assert rep._processes is None  # too few to be worth starting processes
    assert sorted(in_threads) == sorted(few)

    in_threads.clear()
    small = source.write(PROCESS_MIN_OBJECTS, start=1000, prefix="many/")
    large = source.write(2, start=2000, size=GROUP_MAX_BYTES + 1, prefix="large/")
    rep = _replicator(source, target, tmp_path / "b", MemorySink(), transfers=2, processes=2)
    with rep:
        assert rep.run_once().copied == len(few) + len(small) + len(large)
        assert rep._processes is not None
    # The ledger of this replicator is new, so `few` is copied again, now in processes.
    assert sorted(in_threads) == sorted(large)
    assert target_objects(target) == few | small | large


def test_a_killed_worker_hands_its_copies_to_threads(
    source: Source, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = source.write(60)
    target = LocalStore(tmp_path / "target", fsync=False)
    sink = MemorySink()
    rep = _replicator(source, target, tmp_path, sink, transfers=2, processes=2)
    with rep:
        small = LedgerEntry("k", None, 100, attempts=0, check_target=False)
        rep._start_processes([small] * PROCESS_MIN_OBJECTS)  # as a drain does, first thing
        assert rep._processes is not None
        for pid in rep._processes.pids:  # both gone before the first group is sent
            os.kill(pid, signal.SIGKILL)
        with caplog.at_level(logging.WARNING):
            snap = rep.run_once()
        assert rep._processes is None
    assert "copying in threads from now on" in caplog.text
    assert snap.copied == 60 and snap.failed == 0
    assert target_objects(target) == written
    assert len(sink.events) == 60


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cli(tmp_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "edgeloop", "replicate",
        "--from", f"file://{tmp_path / 'source'}", "--to", f"file://{tmp_path / 'target'}",
        "--state", str(tmp_path / "state"), "--transfers", "3", "--once",
    ]  # fmt: skip


def _worker_pids(stderr: str) -> tuple[str, list[int]]:
    match = re.search(r"in 3 (forked|spawned) copy processes \(pids ([\d ]+)\)", stderr)
    assert match, stderr
    return match[1], [int(pid) for pid in match[2].split()]


def test_the_cli_forks_its_copy_processes_and_reaps_them(source: Source, tmp_path: Path) -> None:
    written = source.write(100)
    env = {**os.environ, "EDGELOOP_NO_PROGRESS": "1", "EDGELOOP_LOG_LEVEL": "DEBUG"}
    done = subprocess.run(
        _cli(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=True
    )
    how, pids = _worker_pids(done.stderr)
    assert how == "forked"  # the command runs one thread when it starts its copies
    assert not any(_running(pid) for pid in pids)
    assert target_objects(LocalStore(tmp_path / "target")) == written


def test_copy_processes_exit_when_the_replicator_is_killed(source: Source, tmp_path: Path) -> None:
    source.write(3000, size=20_000)
    env = {**os.environ, "EDGELOOP_NO_PROGRESS": "1", "EDGELOOP_LOG_LEVEL": "DEBUG"}
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        replicator = subprocess.Popen(_cli(tmp_path), env=env, stderr=err)
        try:
            wait_for(lambda: "copy processes (pids" in stderr.read_text(), timeout=60)
            replicator.send_signal(signal.SIGKILL)
        finally:
            replicator.wait(30)
    _how, pids = _worker_pids(stderr.read_text())
    wait_for(lambda: not any(_running(pid) for pid in pids), timeout=30)

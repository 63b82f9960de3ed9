"""Copy processes for replication between two directories.

Copy threads under one GIL hand it to each other at nearly every syscall of a small copy
(about a dozen per object; `strace -f -c` counted 170,000 futex calls for 2,000 objects of
64 KiB with 4 threads, against 2,600 with one), so between two directories, where no copy
waits on a network, groups of small copies go to worker processes of one thread each
instead. A worker opens both directories itself, copies a group with `copy_batch` and
answers with the outcomes and the directories its renames changed; the replicator syncs
those once per batch and keeps the ledger, the events and the order "durable, then
evented, then recorded" in its own process.

Workers are forked while the replicator runs a single thread (nothing another thread holds
can be copied half-done; they build fresh stores and leave with `os._exit`, so they never
touch the parent's SQLite connections), and otherwise started as `python -m
edgeloop.replication.workers`. They talk JSON lines over pipes, one request and one answer
per group, nothing pickled. A worker exits when its pipe closes or the process that started
it is gone, so a kill -9 of the replicator leaves no copier behind (a copy cut short leaves
a temp file, never a torn object).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from edgeloop.errors import (
    ChecksumMismatch,
    InvalidKeyError,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
)
from edgeloop.replication.copier import NOT_ATTEMPTED, CopyOutcome, CopyResult, copy_batch
from edgeloop.replication.plan import CopyTask
from edgeloop.store.base import ForwardingStore, ObjectInfo, ObjectStore, PutData
from edgeloop.store.local import LocalStore, StagedPut

log = logging.getLogger(__name__)

# Errors a worker reports by name and the replicator raises again as the same class, so
# retries and outage handling treat them exactly as errors of a copy thread.
_KNOWN_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        ChecksumMismatch,
        InvalidKeyError,
        ObjectNotFound,
        StoreError,
        StoreUnavailable,
        ConnectionError,
        TimeoutError,
        ValueError,
    )
}


class CopyWorkerError(Exception):
    """An error a copy process reported that has no class of its own here."""


class CopyWorkerLost(Exception):
    """A copy process exited (killed, out of memory) with groups in flight: they were not
    attempted as far as the replicator knows, and copies go on in threads."""


# -- the wire: one JSON line per group, each way -------------------------------------------
def encode_tasks(tasks: Sequence[CopyTask]) -> bytes:
    return orjson.dumps([[t.key, t.size, t.sha256, t.check_target] for t in tasks]) + b"\n"


def decode_tasks(line: bytes) -> list[CopyTask]:
    return [CopyTask(key, size, sha, bool(check)) for key, size, sha, check in orjson.loads(line)]


def _encode_result(result: CopyResult) -> Any:
    if result is NOT_ATTEMPTED:
        return None
    if isinstance(result, CopyOutcome):
        o = result
        return [o.key, o.size, o.sha256, o.expected_sha256, o.skipped, o.gone]
    error = result
    if isinstance(error, OSError) and error.errno is not None:
        filename = None if error.filename is None else str(error.filename)
        return {"errno": error.errno, "strerror": error.strerror, "filename": filename}
    return {"error": type(error).__name__, "message": str(error)}


def encode_answer(results: Sequence[CopyResult], unsynced: Sequence[str]) -> bytes:
    """A group's outcomes, and the directories its renames changed that wait for a sync."""
    answer = {"results": [_encode_result(r) for r in results], "unsynced": unsynced}
    return orjson.dumps(answer) + b"\n"


def _decode_error(item: dict[str, Any]) -> Exception:
    if "errno" in item:
        # OSError picks the subclass for the errno (FileNotFoundError...), and is_outage
        # reads the errno, as for an error raised in this process.
        filename = item["filename"]
        return OSError(item["errno"], item["strerror"], *([filename] if filename else []))
    name, message = item["error"], item["message"]
    cls = _KNOWN_ERRORS.get(name)
    if cls is not None:
        return cls(message)
    return CopyWorkerError(f"{name}: {message}")


def decode_answer(line: bytes) -> tuple[list[CopyResult], list[str]]:
    answer = orjson.loads(line)
    results: list[CopyResult] = []
    for item in answer["results"]:
        if item is None:
            results.append(NOT_ATTEMPTED)
        elif isinstance(item, list):
            key, size, sha, expected, skipped, gone = item
            results.append(CopyOutcome(key, size, sha, expected, skipped, gone))
        else:
            results.append(_decode_error(item))
    return results, answer["unsynced"]


# -- the worker process --------------------------------------------------------------------
class _Stager(ForwardingStore):
    """A copy process's view of its target: `put` only stages the object (temp file written,
    digest checked) and keeps it for `take`; the group's commit makes it visible later."""

    def __init__(self, view: LocalStore) -> None:
        super().__init__(view)
        self.view = view
        self._staged: list[StagedPut] = []

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        staged = self.view.stage(key, data, expected_sha256=expected_sha256)
        self._staged.append(staged)
        return staged.info

    def take(self, results: Sequence[CopyResult]) -> list[StagedPut]:
        """The puts staged since the last take that belong to successful copies; any other
        (a copy that failed after its put) is dropped."""
        staged, self._staged = self._staged, []
        copied = {r.key for r in results if isinstance(r, CopyOutcome)}
        for dropped in (s for s in staged if s.info.key not in copied):
            dropped.abort()
        return [s for s in staged if s.info.key in copied]


@dataclass(frozen=True)
class _CopiedGroup:
    results: Sequence[CopyResult]
    staged: list[StagedPut]


class _GroupCommitter:
    """Commits copied groups in a thread of its own, then answers each, in request order.

    While it commits, the copy thread copies the next group; when it gets to the queue it
    takes every group waiting there and commits them together (`LocalStore.commit_together`:
    one syncfs, then the renames). Why: with an fsync per object, committed one by one,
    2,000 objects of 64 KiB took 1.03 s; this way 0.75 s (docs/benchmarks.md, "Copy
    processes").
    """

    # Groups copied but not yet committed (each holds up to 8 open temp files).
    MAX_WAITING = 2

    def __init__(self, view: LocalStore, answers: IO[bytes]) -> None:
        self.view = view
        self._answers = answers
        self._queue: queue.Queue[_CopiedGroup | None] = queue.Queue(self.MAX_WAITING)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="edgeloop-commit", daemon=True)
        self._thread.start()

    def submit(self, results: Sequence[CopyResult], staged: list[StagedPut]) -> None:
        """Queue a copied group for its commit and answer (waits while two groups wait)."""
        if self._error is not None:
            for dropped in staged:
                dropped.abort()
            raise self._error
        self._queue.put(_CopiedGroup(results, staged))

    def close(self) -> None:
        """Commit and answer every queued group, then stop; raises what stopped answers."""
        self._queue.put(None)
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        while True:
            groups = [self._queue.get()]
            while not self._queue.empty():
                groups.append(self._queue.get())
            copied = [g for g in groups if g is not None]
            if self._error is None:
                try:
                    self._commit(copied)
                except BaseException as exc:  # answers cannot go out (parent gone): stop
                    self._error = exc
            else:
                for staged in (s for g in copied for s in g.staged):
                    staged.abort()
            if len(copied) < len(groups):  # close() queued the end
                return

    def _commit(self, groups: Sequence[_CopiedGroup]) -> None:
        staged = [s for g in groups for s in g.staged]
        committed = dict(
            zip((s.info.key for s in staged), self.view.commit_together(staged), strict=True)
        )
        # Each answer names the directories of every group committed together, its own
        # among them (the replicator keeps a set).
        unsynced = self.view.take_unsynced()
        for group in groups:
            results = [_settled(result, committed) for result in group.results]
            self._answers.write(encode_answer(results, unsynced))
        self._answers.flush()


def _settled(result: CopyResult, committed: dict[str, ObjectInfo | Exception]) -> CopyResult:
    """A copy's result once its object is committed: a failed commit is the copy's error."""
    if isinstance(result, CopyOutcome):
        outcome = committed.get(result.key)
        if isinstance(outcome, Exception):
            return outcome
    return result


def serve(requests: IO[bytes], answers: IO[bytes], source: ObjectStore, target: LocalStore,
          parent: int) -> None:  # fmt: skip
    """Answer each group read from `requests` until it closes or `parent` is gone.

    A group's copies are staged, then committed and answered by a second thread while this
    one copies the next group. Each answer names the directories the commit renamed objects
    into: the replicator syncs them, with those of every other worker, once per batch before
    it emits the batch's events (one directory fsync per batch, not one per group).
    """
    view = target.deferring_sync()
    stager = _Stager(view)
    committer = _GroupCommitter(view, answers)

    def parent_alive() -> bool:
        return os.getppid() == parent

    try:
        for line in requests:
            if not parent_alive():
                return
            results = copy_batch(source, stager, decode_tasks(line), keep_going=parent_alive)
            committer.submit(results, stager.take(results))
    finally:
        stager.take([])  # drops what a copy cut short by an exception had staged
        committer.close()


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # here: the replicator imports this module too, and never parses

    parser = argparse.ArgumentParser(
        prog="python -m edgeloop.replication.workers",
        description="A copy process of `edgeloop replicate` (started by it; not for direct "
        "use): reads groups of copies as JSON lines on stdin, answers each on stdout.",
    )
    parser.add_argument("source", help="source directory store")
    parser.add_argument("target", help="target directory store")
    parser.add_argument("--no-fsync", action="store_true", help="the target does not fsync")
    parser.add_argument(
        "--no-syncfs", action="store_true", help="fsync each object, never one syncfs for many"
    )
    parser.add_argument("--parent", type=int, required=True, help="exit when this pid is gone")
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group: the replicator decides when to stop and then
    # closes this worker's stdin, so the group in hand finishes and is reported.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != args.parent:
        return 0  # the replicator died before this worker started
    source = LocalStore(args.source, create=False)
    target = LocalStore(args.target, fsync=not args.no_fsync, syncfs=not args.no_syncfs)
    with contextlib.suppress(BrokenPipeError):  # the replicator is gone: nobody to answer
        serve(sys.stdin.buffer, sys.stdout.buffer, source, target, args.parent)
    return 0


# -- the replicator's side -----------------------------------------------------------------
@dataclass(frozen=True)
class _Started:
    """A started copy process: the replicator's ends of its pipes, and how to reap it."""

    pid: int
    requests: IO[bytes]
    answers: IO[bytes]
    wait: Callable[[], int]


def _spawn(command: list[str]) -> _Started:
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    return _Started(process.pid, process.stdin, process.stdout, process.wait)


def _fork(source: LocalStore, target: LocalStore, inherited: list[int]) -> _Started:
    """Fork a copy process; only while this process has no other thread (see CopyProcesses).

    `inherited` are the descriptors of copy processes forked before: the child closes them,
    or an earlier worker's stdin would stay open in it and that worker would never see EOF.
    """
    requests_read, requests_write = os.pipe()
    answers_read, answers_write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the copy process: never returns, never runs the parent's finalizers
        code = 1
        try:
            for fd in (requests_write, answers_read, *inherited):
                os.close(fd)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # Fresh stores: the parent's carry its temp-name prefix and counter.
            with (
                os.fdopen(requests_read, "rb") as requests,
                os.fdopen(answers_write, "wb") as answers,
                contextlib.suppress(BrokenPipeError),
            ):
                serve(requests, answers, source.reopened(), target.reopened(), parent)
            code = 0
        except BaseException:  # report it; never unwind into the parent's stack from here
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(requests_read)
    os.close(answers_write)

    def wait() -> int:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    return _Started(pid, os.fdopen(requests_write, "wb"), os.fdopen(answers_read, "rb"), wait)


def _only_thread() -> bool:
    """Whether this process runs a single thread (any kind, not only Python's) now."""
    try:
        return sum(1 for _ in Path("/proc/self/task").iterdir()) == 1
    except OSError:
        return False


class _Worker:
    """One copy process: its pipes, and the futures of its groups in the order sent."""

    def __init__(self, started: _Started, note_unsynced: Callable[[Sequence[str]], None]) -> None:
        self._note_unsynced = note_unsynced
        self._requests = started.requests
        self._answers = started.answers
        self._wait = started.wait
        self.pending: deque[Future[list[CopyResult]]] = deque()
        self._lock = threading.Lock()
        self.lost = False
        self._reader: threading.Thread | None = None

    def start_reading(self, index: int) -> None:
        self._reader = threading.Thread(
            target=self._read, name=f"edgeloop-copy-process-{index}", daemon=True
        )
        self._reader.start()

    def send(self, tasks: Sequence[CopyTask]) -> Future[list[CopyResult]]:
        future: Future[list[CopyResult]] = Future()
        line = encode_tasks(tasks)
        with self._lock:
            if self.lost:
                raise CopyWorkerLost("copy process gone")
            self.pending.append(future)
        try:
            self._requests.write(line)
            self._requests.flush()
        except OSError:  # the worker died: its reader fails every pending future
            with self._lock:
                self.lost = True
        return future

    def _read(self) -> None:
        for line in self._answers:
            with self._lock:
                future = self.pending.popleft()
            try:
                results, unsynced = decode_answer(line)
                # Registered before the outcomes are seen, so the batch that holds them
                # syncs these directories before its events.
                self._note_unsynced(unsynced)
            except Exception as exc:  # a garbled answer: the group counts as not attempted
                future.set_exception(CopyWorkerLost(f"unreadable answer: {exc}"))
            else:
                future.set_result(results)
        with self._lock:
            self.lost = True
            pending, self.pending = list(self.pending), deque()
        code = self._wait()
        self._answers.close()
        for future in pending:
            future.set_exception(CopyWorkerLost(f"copy process exited with status {code}"))

    def close(self) -> None:
        with self._lock:
            self.lost = True
            with contextlib.suppress(OSError):  # already gone
                self._requests.close()  # the worker finishes the group in hand and exits
        if self._reader is not None:
            self._reader.join()


class CopyProcesses:
    """`workers` copy processes between two directory stores; `submit` sends a group to the
    least busy one and returns a future of its results, as a copy thread's would be. The
    directories their renames changed go to `note_unsynced` before the results are set.

    While this process runs a single thread the workers are forked (a millisecond each, and
    nothing held by another thread can be copied half-done); otherwise each is a fresh
    interpreter (`python -m edgeloop.replication.workers`, about 70 ms of start-up).
    """

    def __init__(
        self,
        source: LocalStore,
        target: LocalStore,
        workers: int,
        note_unsynced: Callable[[Sequence[str]], None],
    ) -> None:
        started: list[_Started] = []
        self.forked = _only_thread()
        try:
            if self.forked:
                for _ in range(workers):
                    inherited = [f.fileno() for s in started for f in (s.requests, s.answers)]
                    started.append(_fork(source, target, inherited))
            else:
                command = [
                    sys.executable, "-m", "edgeloop.replication.workers",
                    str(source.root), str(target.root), "--parent", str(os.getpid()),
                ]  # fmt: skip
                if not target.fsync:
                    command.append("--no-fsync")
                if not target.syncfs:
                    command.append("--no-syncfs")
                started.extend(_spawn(command) for _ in range(workers))
        except OSError:
            for s in started:  # do not leave the ones already started waiting
                s.requests.close()
                s.wait()
            raise
        self.pids = [s.pid for s in started]
        self.workers = [_Worker(s, note_unsynced) for s in started]
        for index, worker in enumerate(self.workers):  # threads only after every fork
            worker.start_reading(index)
        log.debug(
            "copying %s -> %s in %d %s copy processes (pids %s)",
            source.url, target.url, workers, "forked" if self.forked else "spawned",
            " ".join(map(str, self.pids)),
        )  # fmt: skip

    def submit(self, tasks: Sequence[CopyTask]) -> Future[list[CopyResult]]:
        """Send `tasks` to the worker with the fewest groups in flight; raises
        CopyWorkerLost when no worker is left."""
        for worker in sorted(self.workers, key=lambda w: len(w.pending)):
            if not worker.lost:
                try:
                    return worker.send(tasks)
                except CopyWorkerLost:
                    continue
        raise CopyWorkerLost("every copy process is gone")

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def local_pair(source: ObjectStore, target: ObjectStore) -> tuple[LocalStore, LocalStore] | None:
    """Both stores when they are plain directory stores (what a worker can open), else None."""
    if type(source) is LocalStore and type(target) is LocalStore:
        return source, target
    return None


if __name__ == "__main__":
    sys.exit(main())

"""Ways to make many small copies durable, side by side, in plain Python (no edgeloop copier).

Four forked processes copy the same 2,000 files of 64 KiB into a fresh directory (temp file,
then rename, as the file store does) and make them durable in one of these ways:

- `none`: not at all (what `rclone copy` does), renamed in the copying thread;
- `fsync`: an fsync per file before its rename, in the copying thread;
- `fsync-behind`: the same in a second thread, while the next file copies;
- `fsync-threads`: the 8 files of a group fsynced at once from 8 threads, then renamed;
- `syncfs-group`: one syncfs(2) per group of 8, then the renames;
- `syncfs-behind`: a second thread takes every file waiting, one syncfs, then the renames
  (what a copy process does, `LocalStore.commit_together`).

`rclone copy` and `rclone copy` + `sync -f` run beside them. Every round runs each way once,
in a rotated order, `sync` before each; targets are deleted only after the last round (this
machine's disk is slow for a while after thousands of deletes).

    .venv/bin/python benchmarks/commit_modes.py --rounds 6

Writes benchmarks/results/commit-modes.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgeloop.store import syncfs as syncfs_module  # noqa: E402
from edgeloop.testing.s3server import rclone_binary  # noqa: E402

PROCESSES = 4
GROUP = 8
MODES = ("none", "fsync", "fsync-behind", "fsync-threads", "syncfs-group", "syncfs-behind")
REFERENCES = ("rclone", "rclone-sync")
RESULTS = ROOT / "benchmarks" / "results"

Staged = tuple[int, str, str]  # descriptor, temp path, final path


def populate(source: Path, count: int, size: int) -> list[str]:
    names = []
    block = os.urandom(size)
    for i in range(count):
        name = f"d{i // 100:02d}/o{i:05d}.bin"
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(i.to_bytes(8, "big") + block[8:])
        names.append(name)
    return names


def _stage(source: Path, target: Path, name: str, temp: str) -> Staged:
    with open(source / name, "rb") as handle:
        data = handle.read()
    hashlib.sha256(data).digest()  # the store checks every object's digest
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    return fd, temp, str(target / name)


def _publish(staged: list[Staged]) -> None:
    for fd, temp, final in staged:
        os.close(fd)
        os.rename(temp, final)


def _commit(mode: str, staged: list[Staged], pool: ThreadPoolExecutor) -> None:
    if mode in ("fsync", "fsync-behind"):
        for fd, _, _ in staged:
            os.fsync(fd)
    elif mode == "fsync-threads":
        list(pool.map(os.fsync, [fd for fd, _, _ in staged]))
    elif mode in ("syncfs-group", "syncfs-behind") and staged:
        syncfs_module.syncfs(staged[0][0])
    _publish(staged)


def copy_part(mode: str, source: Path, target: Path, names: list[str], worker: int) -> None:
    """One copy process's share, made durable the `mode` way."""
    pool = ThreadPoolExecutor(GROUP)
    temps = (f"{target}/.tmp/w{worker}-{n}.part" for n in range(len(names)))
    if mode in ("none", "fsync"):
        for name in names:
            _commit(mode, [_stage(source, target, name, next(temps))], pool)
        return
    if mode in ("fsync-threads", "syncfs-group"):
        for start in range(0, len(names), GROUP):
            group = [_stage(source, target, n, next(temps)) for n in names[start : start + GROUP]]
            _commit(mode, group, pool)
        return
    waiting: queue.SimpleQueue[Staged | None] = queue.SimpleQueue()

    def committer() -> None:
        while True:
            taken = [waiting.get()]
            while mode != "fsync-behind" and not waiting.empty():
                taken.append(waiting.get())
            _commit(mode, [s for s in taken if s is not None], pool)
            if taken[-1] is None:
                return

    thread = threading.Thread(target=committer)
    thread.start()
    for name in names:
        waiting.put(_stage(source, target, name, next(temps)))
    waiting.put(None)
    thread.join()


def run_mode(mode: str, source: Path, target: Path, names: list[str]) -> float:
    (target / ".tmp").mkdir(parents=True)
    for directory in {str(Path(n).parent) for n in names}:
        (target / directory).mkdir(parents=True, exist_ok=True)
    os.sync()
    start = time.perf_counter()
    children = []
    for worker in range(PROCESSES):
        pid = os.fork()
        if pid == 0:  # never returns: the parent's cleanup is not the child's
            code = 1
            try:
                copy_part(mode, source, target, names[worker::PROCESSES], worker)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    failed = [pid for pid in children if os.waitpid(pid, 0)[1] != 0]
    seconds = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{mode}: copy processes {failed} failed")
    return seconds


def run_rclone(source: Path, target: Path, then_sync: bool) -> float:
    os.sync()
    start = time.perf_counter()
    subprocess.run(
        [rclone_binary(), "copy", str(source), str(target), "--transfers", str(PROCESSES),
         "--checkers", str(PROCESSES)],
        check=True, capture_output=True,
    )  # fmt: skip
    if then_sync:
        subprocess.run(["sync", "-f", str(target)], check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--objects", type=int, default=2000)
    args = parser.parse_args()
    if not syncfs_module.available():
        print("syncfs is not available here (Linux 5.8 or later is needed)", file=sys.stderr)
        return 2
    runs = (*MODES, *REFERENCES)
    times: dict[str, list[float]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory(prefix="edgeloop-commit-modes-") as tmp:
        work = Path(tmp)
        names = populate(work / "source", args.objects, 64 * 1024)
        for r in range(args.rounds):
            for run in runs[r % len(runs) :] + runs[: r % len(runs)]:
                target = work / "targets" / f"{run}-{r}"
                if run in REFERENCES:
                    seconds = run_rclone(work / "source", target, run == "rclone-sync")
                else:
                    seconds = run_mode(run, work / "source", target, names)
                times[run].append(seconds)
                print(f"round {r} {run}: {seconds:.3f} s", file=sys.stderr, flush=True)
        shutil.rmtree(work / "targets")
    result = {
        "objects": args.objects,
        "processes": PROCESSES,
        "rounds": args.rounds,
        "seconds": times,
        "median_s": {run: statistics.median(ts) for run, ts in times.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "commit-modes.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| way | median s | min-max s |\n|---|---:|---:|")
    for run, ts in times.items():
        print(f"| {run} | {statistics.median(ts):.3f} | {min(ts):.3f}-{max(ts):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

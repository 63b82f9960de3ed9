"""Replication benchmark: `edgeloop replicate` beside `rclone copy`, same stores, same concurrency.

Run: .venv/bin/python benchmarks/replication.py [--rounds 5] [--quick] [--only small|large]

Scenarios (reference and edgeloop alternate, A B A B, each round on fresh targets):
  many-small   2,000 objects of 64 KiB, directory -> directory and directory -> S3 (rclone serve s3)
  few-large       20 objects of 32 MiB, same two targets
Then, edgeloop alone (targets from the issue):
  incremental  10 new objects in a source of 100,000 already replicated: time to copy + event
  backlog      peak RSS of a replicator holding a 100,000-object backlog (target down), and
               of one draining it
Each side-by-side row gives the median of the per-round ratios (rclone time / edgeloop time)
and their spread (min-max), and the same ratio of CPU seconds (user + system of the child
process), which a busy shared machine disturbs less than wall time.
Writes benchmarks/results/replication.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import edgeloop  # noqa: E402
from edgeloop.journal import SQLiteJournal  # noqa: E402
from edgeloop.model.events import Event, EventType  # noqa: E402
from edgeloop.replication.ledger import Copied, Ledger  # noqa: E402
from edgeloop.replication.plan import CopyTask  # noqa: E402
from edgeloop.store import LocalStore  # noqa: E402
from edgeloop.testing.s3server import S3Server, rclone_binary  # noqa: E402

BIN = Path(sys.executable).parent
TRANSFERS = 4
# (edgeloop run, reference run, scenario suffix) of each row, per target; the runs of a
# round are the tools these name.
PAIRS = {
    "dir": [
        ("edgeloop", "rclone", ""),
        ("edgeloop-nofsync", "rclone", " (no fsync)"),
        ("edgeloop", "rclone-sync", " (durable: rclone + sync -f)"),
    ],
    "s3": [("edgeloop", "rclone", "")],
}
# After deleting many files, wait this long before measuring again (see side_by_side).
SETTLE_SECONDS = 35.0
RESULTS = ROOT / "benchmarks" / "results"


def populate(directory: Path, count: int, size: int) -> int:
    """Write `count` random objects of `size` bytes through the edgeloop store (digests kept)."""
    store = LocalStore(directory, fsync=False)
    block = os.urandom(size)
    for i in range(count):
        # Vary the first bytes so every object is distinct without generating all of them.
        store.put(f"data/{i // 1000:03d}/{i:06d}.bin", i.to_bytes(8, "big") + block[8:])
    return count * size


def timed(
    command: list[str], env: dict[str, str], *, then_sync: Path | None = None
) -> tuple[float, float]:
    """Run `command` to completion: (wall seconds, CPU seconds of the child, user + system).
    With `then_sync`, the time includes `sync -f` of that directory's file system after it."""
    # Write back every dirty page first: otherwise the kernel flushes the previous run's
    # 130 MB while this one runs, and an fsyncing tool waits behind the other tool's data.
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    if then_sync is not None:
        subprocess.run(["sync", "-f", str(then_sync)], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run_rclone(
    src: Path, dst: str, env: dict[str, str], *, then_sync: Path | None = None
) -> tuple[float, float]:
    return timed(
        [rclone_binary(), "copy", str(src), dst, "--transfers", str(TRANSFERS),
         "--checkers", str(TRANSFERS), "--exclude", ".edgeloop-tmp/**"],
        env, then_sync=then_sync,
    )  # fmt: skip


def run_edgeloop(src: Path, dst: str, state: Path) -> tuple[float, float]:
    return timed(
        [str(BIN / "edgeloop"), "replicate", "--from", f"file://{src}", "--to", dst,
         "--state", str(state), "--transfers", str(TRANSFERS), "--once"],
        {**os.environ, "EDGELOOP_NO_PROGRESS": "1"},
    )  # fmt: skip


def side_by_side(
    name: str, src: Path, count: int, nbytes: int, work: Path, server: S3Server, rounds: int
) -> list[dict[str, object]]:
    rows = []
    env = {
        **os.environ,
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": server.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": server.secret_key,
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
        "RCLONE_CONFIG": "/dev/null",
    }
    for target in ("dir", "s3"):
        # rclone does not fsync a local target; edgeloop does by default (?fsync=0 turns it
        # off), so the directory target is measured both ways, and a third way where rclone's
        # copies are made durable too: `rclone copy` then `sync -f` of the target's file
        # system (inside rclone's time), durable against durable.
        tools = tuple(dict.fromkeys(run for pair in PAIRS[target] for run in pair[1::-1]))
        times: dict[str, list[float]] = {tool: [] for tool in tools}
        cpus: dict[str, list[float]] = {tool: [] for tool in tools}
        # Many small targets are kept until the scenario ends: this machine's ext4 has no
        # journal, and creating files in the 30 s after thousands were deleted is several
        # times slower, which would tax whichever tool ran next.
        keep = count > 100
        for r in range(-1, rounds):  # round -1 warms up (caches, bytecode) and is not counted
            order = tools[r % len(tools) :] + tools[: r % len(tools)]  # rotate who goes first
            for tool in order:
                tag = f"{name}-{target}-{tool}-{r}"
                if target == "dir":
                    dest_dir = work / "targets" / tag
                    dst = str(dest_dir) if tool.startswith("rclone") else f"file://{dest_dir}"
                    if tool == "edgeloop-nofsync":
                        dst += "?fsync=0"
                else:
                    (server.root / tag).mkdir(parents=True)
                    dst = f"bench:{tag}" if tool == "rclone" else server.url(tag)
                if tool == "rclone":
                    wall, cpu = run_rclone(src, dst, env)
                elif tool == "rclone-sync":
                    wall, cpu = run_rclone(src, dst, env, then_sync=dest_dir)
                else:
                    wall, cpu = run_edgeloop(src, dst, work / "state" / tag)
                if r >= 0:
                    times[tool].append(wall)
                    cpus[tool].append(cpu)
                if not keep:
                    shutil.rmtree(work / "targets", ignore_errors=True)
                    shutil.rmtree(server.root / tag, ignore_errors=True)
        if keep:
            shutil.rmtree(work / "targets", ignore_errors=True)
            for r in range(-1, rounds):
                for tool in tools:
                    shutil.rmtree(server.root / f"{name}-{target}-{tool}-{r}", ignore_errors=True)
            time.sleep(SETTLE_SECONDS)
        med = {tool: statistics.median(ts) for tool, ts in times.items()}
        for tool, reference, suffix in PAIRS[target]:
            ratios = [a / b for a, b in zip(times[reference], times[tool], strict=True)]
            cpu_ratios = [a / b for a, b in zip(cpus[reference], cpus[tool], strict=True)]
            rows.append(
                {
                    "scenario": f"{name} dir->{target}{suffix}",
                    "reference": reference,
                    "objects": count,
                    "bytes": nbytes,
                    "rclone_s": times[reference],
                    "edgeloop_s": times[tool],
                    "rclone_cpu_s": cpus[reference],
                    "edgeloop_cpu_s": cpus[tool],
                    "rclone_objects_per_s": count / med[reference],
                    "edgeloop_objects_per_s": count / med[tool],
                    "rclone_MB_per_s": nbytes / 1e6 / med[reference],
                    "edgeloop_MB_per_s": nbytes / 1e6 / med[tool],
                    "ratio_edgeloop_over_rclone": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "cpu_ratio_edgeloop_over_rclone": statistics.median(cpu_ratios),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def incremental(work: Path, total: int, new: int) -> dict[str, object]:
    """A source of `total` objects already replicated (ledger done, target in place), then
    `new` more: time for a warm replicator to copy and event them."""
    from edgeloop.replication import MemorySink, ReplicationOptions, Replicator

    src, dst = LocalStore(work / "inc-src", fsync=False), LocalStore(work / "inc-dst", fsync=False)
    journal = SQLiteJournal(work / "inc-journal.db")
    ledger = Ledger(work / "inc-ledger.db")
    batch: list[Event] = []
    copies: list[Copied] = []
    for i in range(total):
        key = f"captures/m/{i // 1000:03d}/{i:06d}.bin"
        data = i.to_bytes(8, "big") * 8
        info = src.put(key, data)
        dst.put(key, data)
        batch.append(_created(key, info.size, info.sha256 or ""))
        copies.append(Copied(key, info.sha256 or "", info.size, info.sha256))
        if len(batch) == 5000 or i == total - 1:
            journal.append_many(batch)
            ledger.enqueue([CopyTask(c.key, c.size, c.sha256) for c in copies])
            ledger.mark_done(copies)
            batch, copies = [], []
    ledger.enqueue([], journal_cursor=journal.last_seq())
    sink = MemorySink()
    events_journal = SQLiteJournal(work / "inc-core.db")
    rep = Replicator(
        src, dst, ledger, events_journal, source_journal=journal, target_site="core",
        options=ReplicationOptions(transfers=TRANSFERS),
    )  # fmt: skip
    del sink
    rep.run_once()  # warm: nothing to do
    for i in range(total, total + new):
        key = f"captures/m/new/{i:06d}.bin"
        info = src.put(key, os.urandom(4096))
        journal.append(_created(key, info.size, info.sha256 or ""))
    start = time.perf_counter()
    snap = rep.run_once()
    elapsed = time.perf_counter() - start
    rep.close()
    evented = len(events_journal.read(0, limit=10_000, types=[EventType.OBJECT_REPLICATED]))
    return {
        "scenario": f"incremental {new} new in {total:,}",
        "copied": snap.copied,
        "evented": evented,
        "seconds": elapsed,
        "target_seconds": 1.0,
    }


def _created(key: str, size: int, sha: str) -> Event:
    return Event(
        id=f"created:edge:{key}@{sha}", type=EventType.OBJECT_CREATED, site="edge", subject=key,
        data={"key": key, "size": size, "sha256": sha},
    )  # fmt: skip


_RSS_CHILD = r"""
import sys, time
from pathlib import Path
from edgeloop.errors import ReplicationError
from edgeloop.journal import SQLiteJournal
from edgeloop.replication import Backoff, Ledger, ReplicationOptions, Replicator, MemorySink
from edgeloop.store import LocalStore, open_store
work, target = Path(sys.argv[1]), sys.argv[2]
rep = Replicator(LocalStore(work / "inc-src"), open_store(target), Ledger(work / sys.argv[3]),
                 SQLiteJournal(work / (sys.argv[3] + ".events")),
                 source_journal=SQLiteJournal(work / "inc-journal.db"), target_site="core",
                 options=ReplicationOptions(transfers=4, outage_timeout=3.0,
                                            backoff=Backoff(base=0.2, cap=1.0)))
start = time.perf_counter()
try:
    snap = rep.run_once()
    result = {"copied": snap.copied}
except ReplicationError:
    result = {"copied": 0}
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
result.update(backlog=rep.backlog, seconds=time.perf_counter() - start,
              peak_rss_mb=int(hwm.split()[1]) / 1024)
print(__import__("json").dumps(result))
"""


def backlog_rss(work: Path, server: S3Server, total: int) -> list[dict[str, object]]:
    """Peak RSS of a replicator process holding `total` pending objects: first with the
    target down (the backlog fills and waits), then draining the same ledger into a directory."""
    dead = server.url("gone").replace(f":{server.port}", ":9") + "&max_retries=0&connect_timeout=1"
    rows = []
    for label, target in (
        ("target down", dead),
        ("draining to dir", f"file://{work}/rss-dst?fsync=0"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(work), target, "rss-ledger.db"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        row = {"scenario": f"backlog of {total:,}, {label}", **json.loads(out.stdout)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(
    side: list[dict[str, object]], inc: dict[str, object] | None, rss: list[dict[str, object]]
) -> str:
    lines = [
        "| scenario | rclone obj/s | edgeloop obj/s | rclone MB/s | edgeloop MB/s | "
        "edgeloop/rclone (median, min-max) | CPU-time ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in side:
        lines.append(
            f"| {r['scenario']} | {r['rclone_objects_per_s']:.0f}"
            f" | {r['edgeloop_objects_per_s']:.0f}"
            f" | {r['rclone_MB_per_s']:.1f} | {r['edgeloop_MB_per_s']:.1f}"
            f" | **{r['ratio_edgeloop_over_rclone']:.2f}** ({r['ratio_min']:.2f}-"
            f"{r['ratio_max']:.2f}) | {r['cpu_ratio_edgeloop_over_rclone']:.2f} |"
        )
    if inc is None:
        return "\n".join(lines)
    lines += [
        "",
        "| scenario | result |",
        "|---|---|",
        f"| {inc['scenario']} | {inc['copied']} copied, {inc['evented']} evented in "
        f"{inc['seconds']:.3f} s (target < 1 s) |",
    ]
    for r in rss:
        lines.append(
            f"| {r['scenario']} | peak RSS {r['peak_rss_mb']:.0f} MB (target < 300 MB), "
            f"backlog left {r['backlog']:,}, copied {r['copied']:,} in {r['seconds']:.1f} s |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--only", choices=("small", "large"), help="only this side-by-side scenario, no extras"
    )
    args = parser.parse_args()
    small_n, large_n, inc_total = (200, 4, 5_000) if args.quick else (2_000, 20, 100_000)
    # Measure edgeloop as installed, its bytecode cached as pip leaves it: an editable
    # checkout run under PYTHONDONTWRITEBYTECODE (some sandboxes set it) would compile its
    # modules at every start instead, 25-30 ms a run that a compiled rclone never pays.
    compileall.compile_dir(Path(edgeloop.__file__).parent, quiet=1)
    load_before = os.getloadavg()
    inc: dict[str, object] | None = None
    rss: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-") as tmp:
        work = Path(tmp)
        with S3Server(work / "s3root") as server:
            side = []
            if args.only in (None, "small"):
                src = work / "small"
                side += side_by_side("many-small", src, small_n,
                                     populate(src, small_n, 64 * 1024),
                                     work, server, args.rounds)  # fmt: skip
                shutil.rmtree(src)
            if args.only in (None, "large"):
                src = work / "large"
                side += side_by_side("few-large", src, large_n,
                                     populate(src, large_n, 32 * 1024**2),
                                     work, server, args.rounds)  # fmt: skip
                shutil.rmtree(src)
            if args.only is None:
                inc = incremental(work, inc_total, 10)
                print(json.dumps(inc), flush=True)
                rss = backlog_rss(work, server, inc_total)
    result = {
        "machine": f"{os.cpu_count()} cores, shared with other work while measuring",
        "load_average_before_after": [load_before, os.getloadavg()],
        "transfers": TRANSFERS,
        "rounds": args.rounds,
        "side_by_side": side,
        "incremental": inc,
        "backlog": rss,
        "benchmark_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "replication-quick.json" if args.quick else "replication.json"
    if args.only:
        name = name.replace(".json", f"-{args.only}.json")
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(side, inc, rss)
    (RESULTS / name.replace(".json", ".md")).write_text(table + "\n")
    print(table)
    ok = all(r["ratio_edgeloop_over_rclone"] >= 1.0 for r in side)  # type: ignore[operator]
    ok = ok and (inc is None or inc["seconds"] < 1.0)  # type: ignore[operator]
    ok = ok and all(r["peak_rss_mb"] < 300 for r in rss)  # type: ignore[operator]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

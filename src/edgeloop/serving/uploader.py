"""The capture uploader as a process of its own, beside the server process.

In a thread of the server it shared the interpreter lock with the event loop, and each
hand-over cost requests more than the upload's own CPU (capture at 100%: 0.86-0.90 of
capture off, against 0.96 with uploads held back). As a process it has its own lock, runs
at the lowest CPU priority, and reads only what is on disk: sealed spool segments.

While the CPUs it may run on are busy (above `--busy-above`, the server's own work), uploads
wait, up to `--defer-seconds` for the oldest sealed segment and while the spool holds less
than `--defer-bytes`: a saturated serving core spends nothing on uploads the spool can hold.

The server writes a line to its stdin whenever it seals a segment; end of input (the server
stopped, or was killed) means one last pass, then exit. It answers one JSON line per
uploaded segment (`{"uploaded": N}`), failed attempt (`{"error": "..."}`) or change of
waiting (`{"deferred": true|false}`) on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgeloop.serving.cpuload import CpuLoad
from edgeloop.serving.priority import lower_priority
from edgeloop.serving.spool import slot_usage

# Seconds between looks at the CPUs while uploads wait.
DEFER_POLL_SECONDS = 0.5


def _report(segment: str, records: int) -> None:
    print(json.dumps({"uploaded": records, "segment": segment}), flush=True)


def _wait_for_word(timeout: float) -> bool:
    """Wait for a line on stdin (a segment was sealed); False at end of input."""
    readable, _, _ = select.select([sys.stdin], [], [], timeout)
    if readable:
        return bool(os.read(sys.stdin.fileno(), 4096))
    return True


def _wait_out(seconds: float) -> bool:
    """Wait `seconds` whatever arrives on stdin; False as soon as input ends."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _wait_for_word(max(0.0, deadline - time.monotonic())):
            return False
    return True


def upload_waits(
    busy: float | None, oldest_age: float | None, spool_bytes: int, *,
    busy_above: float, defer_seconds: float, defer_bytes: int,
) -> bool:  # fmt: skip
    """Whether uploads wait now: the CPUs are busy, and the oldest sealed segment is younger
    than `defer_seconds` and the spool smaller than `defer_bytes` (unknown load: no wait)."""
    if defer_seconds <= 0 or busy is None or oldest_age is None:
        return False
    return busy > busy_above and oldest_age < defer_seconds and spool_bytes < defer_bytes


def _spool_state(spool: Path) -> tuple[float | None, int]:
    """Age in seconds of the oldest sealed segment (None when there is none) and the bytes
    the spool slot holds."""
    size, sealed = slot_usage(spool)
    for path in sealed:
        with contextlib.suppress(FileNotFoundError):  # uploaded meanwhile: the next one
            return max(0.0, time.time() - path.stat().st_mtime), size
    return None, size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spool", type=Path, required=True, help="the spool slot directory")
    parser.add_argument("--store", required=True, help="the capture store URL")
    parser.add_argument("--site", required=True)
    parser.add_argument("--journal", help="journal each batch there (object.created)")
    parser.add_argument("--retry-seconds", type=float, default=5.0)
    parser.add_argument(
        "--defer-seconds",
        type=float,
        default=0.0,
        help="longest wait of a sealed segment while the CPUs are busy (0: none)",
    )
    parser.add_argument(
        "--defer-bytes",
        type=int,
        default=0,
        help="uploads wait only while the spool holds less than this",
    )
    parser.add_argument(
        "--busy-above",
        type=float,
        default=0.9,
        help="busy share of this process's CPUs that makes uploads wait",
    )
    args = parser.parse_args(argv)
    # Batches can wait, requests cannot (threads it starts inherit this). Lowered before
    # importing pyarrow and the capture code: 0.3 s of CPU that took it from a starting server.
    lower_priority()
    from edgeloop.serving.capture import open_capture_store, upload_sealed_segments

    store = open_capture_store(args.store, args.site, args.journal)
    load = CpuLoad() if args.defer_seconds > 0 else None
    running, deferred = True, False
    if load is not None:  # measure the CPUs for a moment before the first pass
        running = _wait_out(DEFER_POLL_SECONDS)
    while True:
        if running and load is not None:
            oldest, size = _spool_state(args.spool)
            waits = upload_waits(
                load.busy_fraction(), oldest, size, busy_above=args.busy_above,
                defer_seconds=args.defer_seconds, defer_bytes=args.defer_bytes,
            )  # fmt: skip
            if waits != deferred:
                deferred = waits
                print(json.dumps({"deferred": deferred}), flush=True)
            if waits:
                running = _wait_out(DEFER_POLL_SECONDS)
                continue  # end of input: one last pass below, busy or not
        error = upload_sealed_segments(args.spool, store, args.site, _report)
        if error is not None:
            print(json.dumps({"error": error}), flush=True)
        if not running:
            return 0
        # After a failure wait before trying again; otherwise wait for the next seal.
        deadline = time.monotonic() + (args.retry_seconds if error else 0.5)
        while running and time.monotonic() < deadline:
            running = _wait_for_word(max(0.0, deadline - time.monotonic()))
            if running and error is None:
                break


if __name__ == "__main__":
    sys.exit(main())

"""The capture uploader as a process of its own, beside the server process.

In a thread of the server it shared the interpreter lock with the event loop, and each
hand-over cost requests more than the upload's own CPU (capture at 100%: 0.86-0.90 of
capture off, against 0.96 with uploads held back). As a process it has its own lock, runs
at the lowest CPU priority, and reads only what is on disk: sealed spool segments.

The server writes a line to its stdin whenever it seals a segment; end of input (the server
stopped, or was killed) means one last pass, then exit. It answers one JSON line per
uploaded segment (`{"uploaded": N}`) or failed attempt (`{"error": "..."}`) on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgeloop.serving.capture import open_capture_store, upload_sealed_segments
from edgeloop.serving.priority import lower_priority


def _report(segment: str, records: int) -> None:
    print(json.dumps({"uploaded": records, "segment": segment}), flush=True)


def _wait_for_word(timeout: float) -> bool:
    """Wait for a line on stdin (a segment was sealed); False at end of input."""
    readable, _, _ = select.select([sys.stdin], [], [], timeout)
    if readable:
        return bool(os.read(sys.stdin.fileno(), 4096))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spool", type=Path, required=True, help="the spool slot directory")
    parser.add_argument("--store", required=True, help="the capture store URL")
    parser.add_argument("--site", required=True)
    parser.add_argument("--journal", help="journal each batch there (object.created)")
    parser.add_argument("--retry-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    lower_priority()  # batches can wait, requests cannot (threads it starts inherit it)
    store = open_capture_store(args.store, args.site, args.journal)
    running = True
    while True:
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

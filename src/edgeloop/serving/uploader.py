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
import logging
import os
import select
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from edgeloop.serving.priority import BACKGROUND_NICE
from edgeloop.serving.spool import SEALED_SUFFIX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploaderCommand:
    """How to start an uploader process for one site's capture store."""

    store_url: str
    site: str
    journal: str | None = None  # a journal URL or path
    retry_seconds: float = 5.0

    def argv(self, spool_dir: Path) -> list[str]:
        args = [sys.executable, "-m", "edgeloop.serving.uploader", "--spool", str(spool_dir),
                "--store", self.store_url, "--site", self.site,
                "--retry-seconds", str(self.retry_seconds)]  # fmt: skip
        if self.journal is not None:
            args += ["--journal", self.journal]
        return args


def upload_pass(spool_dir: Path, store: object, site: str) -> tuple[int, str | None]:
    """Upload every sealed segment, oldest first; (segments uploaded, the error that stopped
    the pass or None)."""
    from edgeloop.serving.capture import upload_segment

    done = 0
    for segment in sorted(spool_dir.glob(f"*{SEALED_SUFFIX}")):
        try:
            count = upload_segment(segment, store, site)  # type: ignore[arg-type]
        except FileNotFoundError:
            continue  # dropped by the server to make room meanwhile
        except Exception as exc:  # the store is down or refused: the segment stays
            return done, f"{segment.name}: {type(exc).__name__}: {exc}"
        with suppress(FileNotFoundError):
            segment.unlink()
        print(json.dumps({"uploaded": count, "segment": segment.name}), flush=True)
        done += 1
    return done, None


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
    with suppress(OSError, AttributeError):  # batches can wait, requests cannot
        os.setpriority(os.PRIO_PROCESS, 0, BACKGROUND_NICE)
    from edgeloop.journal import JournalSink, open_journal
    from edgeloop.store import open_store
    from edgeloop.store.journaled import JournaledStore

    store = open_store(args.store)
    if args.journal is not None:
        store = JournaledStore(store, JournalSink(open_journal(args.journal)), args.site)
    running = True
    while True:
        _, error = upload_pass(args.spool, store, args.site)
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

"""Switching a SQLite database to WAL mode safely when several processes open it at once."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

# The switch to WAL takes a write lock while holding a read lock; when two connections do
# it at the same moment SQLite answers one "database is locked" at once, without its busy
# timeout (it would deadlock otherwise), so the caller retries.
WAL_RETRY_SECONDS = 30.0


def enable_wal(
    execute: Callable[[str], object],
    timeout: float = WAL_RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run `PRAGMA journal_mode=WAL` through `execute`, retrying while another connection
    holds the lock, for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            sleep(delay)
            delay = min(delay * 2, 0.2)

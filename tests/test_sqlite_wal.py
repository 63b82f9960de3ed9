"""Switching to WAL retries the immediate "database is locked" a concurrent opener causes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgeloop.sqlite_wal import enable_wal


def test_a_locked_switch_is_retried_until_it_succeeds() -> None:
    calls: list[str] = []
    sleeps: list[float] = []

    def execute(sql: str) -> None:
        calls.append(sql)
        if len(calls) < 4:
            raise sqlite3.OperationalError("database is locked")

    enable_wal(execute, sleep=sleeps.append)
    assert calls == ["PRAGMA journal_mode=WAL"] * 4
    assert sleeps == [0.005, 0.01, 0.02]


def test_other_errors_and_a_lock_past_the_timeout_are_raised() -> None:
    def broken(sql: str) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        enable_wal(broken, sleep=lambda _s: None)

    def locked(sql: str) -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(locked, timeout=0.0, sleep=lambda _s: None)


def test_a_real_database_ends_in_wal_mode(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    enable_wal(db.execute)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()

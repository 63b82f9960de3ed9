"""The replication ledger: one SQLite file per (source, target, prefix) recording every object.

States: `pending` (to copy; the backlog), `done` (copied, verified and evented), `failed`
(gave up after too many bad attempts; re-queued when the object is seen again), `gone`
(deleted at the source before it could be copied). Beside them: the source journal cursor,
the anti-entropy watermark and the time of the last full pass.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeloop.errors import ReplicationError
from edgeloop.replication.plan import CopyTask, LedgerRecord
from edgeloop.sqlite_wal import enable_wal

PENDING, DONE, FAILED, GONE = "pending", "done", "failed", "gone"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key          TEXT PRIMARY KEY,
    sha256       TEXT,
    size         INTEGER NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    check_target INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    updated      REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_due ON objects(state, next_attempt, key);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A pending object as the copier needs it."""

    key: str
    sha256: str | None
    size: int
    attempts: int
    check_target: bool

    def task(self) -> CopyTask:
        return CopyTask(self.key, self.size, self.sha256, self.check_target)


@dataclass(frozen=True, slots=True)
class Copied:
    """A verified copy, to be marked done: the digest is the one the target verified."""

    key: str
    sha256: str
    size: int
    expected_sha256: str | None


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    """How many objects are in each state."""

    pending: int = 0
    done: int = 0
    failed: int = 0
    gone: int = 0


class Ledger:
    """Durable replication state; used from one thread (the replicator's loop)."""

    def __init__(self, path: str | Path, *, pair: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            # Status may be read from another thread than the loop's; a lock serialises use.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            enable_wal(self._db.execute)
            # NORMAL: a crash of the process loses nothing; a power cut may lose the last
            # commits, and those objects are then simply copied (and verified) again.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ReplicationError(
                f"cannot open replication ledger {self.path}: {exc}; move it aside to start over"
            ) from exc
        if pair is not None:
            self._check_pair(pair)

    def _check_pair(self, pair: str) -> None:
        known = self.get_meta("pair")
        if known is None:
            self.set_meta("pair", pair)
        elif known != pair:
            raise ReplicationError(
                f"ledger {self.path} belongs to {known!r}, not {pair!r}; "
                "give this pair its own --state directory"
            )

    # -- meta -----------------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        row = self._run("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, name: str, value: str) -> None:
        self._run(
            "INSERT INTO meta(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    @property
    def journal_cursor(self) -> int:
        """The last source-journal seq whose events are in the ledger."""
        return int(self.get_meta("journal_cursor") or 0)

    @property
    def watermark(self) -> str | None:
        """The listing pass under way resumes after this key ('' : from the start); None when
        no pass is under way."""
        return self.get_meta("watermark")

    def start_pass(self) -> None:
        """Begin an anti-entropy pass at the first key (a pass under way is kept)."""
        self._run("INSERT OR IGNORE INTO meta(name, value) VALUES ('watermark', '')")

    @property
    def last_full_pass(self) -> float | None:
        """Unix time the last anti-entropy pass finished, if any."""
        value = self.get_meta("last_full_pass")
        return float(value) if value else None

    # -- writes ---------------------------------------------------------------------------
    def enqueue(
        self,
        tasks: Iterable[CopyTask],
        *,
        journal_cursor: int | None = None,
        watermark: str | None = None,
        pass_done: bool = False,
    ) -> int:
        """Queue tasks in one transaction, with the position they were read up to.

        An object already done in the same version is left alone; a new version, a failed or
        a gone entry becomes pending again. Returns how many entries became pending.
        """
        now = time.time()
        rows = [(t.key, t.sha256, t.size, int(t.check_target), now) for t in tasks]
        with self._tx():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT INTO objects(key, sha256, size, state, check_target, updated) "
                "VALUES (?1, ?2, ?3, 'pending', ?4, ?5) "
                "ON CONFLICT(key) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
                "state = 'pending', attempts = 0, next_attempt = 0, last_error = NULL, "
                "check_target = MAX(check_target, excluded.check_target), updated = ?5 "
                # failed/gone: seen again, try again. done: only a different version (a
                # planner passes no digest only when sizes already differ). pending: keep the
                # entry, but follow a newer version.
                "WHERE objects.state IN ('failed', 'gone') "
                "OR (objects.state = 'done' AND (excluded.sha256 IS NULL "
                "OR objects.sha256 IS NOT excluded.sha256)) "
                "OR (objects.state = 'pending' AND excluded.sha256 IS NOT NULL "
                "AND objects.sha256 IS NOT excluded.sha256)",
                rows,
            )
            added = self._db.total_changes - before
            if journal_cursor is not None:
                self.set_meta("journal_cursor", str(journal_cursor))
            if pass_done:
                self._run("DELETE FROM meta WHERE name = 'watermark'")
                self.set_meta("last_full_pass", repr(now))
            elif watermark is not None:
                self.set_meta("watermark", watermark)
        return added

    def mark_done(self, copies: Sequence[Copied]) -> None:
        """Record verified, evented copies; an entry re-queued meanwhile for a newer version
        stays pending."""
        now = time.time()
        with self._tx():
            self._db.executemany(
                "UPDATE objects SET state = 'done', sha256 = ?2, size = ?3, last_error = NULL, "
                "check_target = 0, updated = ?5 WHERE key = ?1 AND state = 'pending' "
                "AND (sha256 IS ?4 OR sha256 = ?2)",
                [(c.key, c.sha256, c.size, c.expected_sha256, now) for c in copies],
            )

    def mark_gone(self, keys: Sequence[str]) -> None:
        """The source no longer has these keys; nothing to copy."""
        now = time.time()
        with self._tx():
            self._db.executemany(
                "UPDATE objects SET state = 'gone', updated = ? "
                "WHERE key = ? AND state = 'pending'",
                [(now, k) for k in keys],
            )

    def mark_retry(self, key: str, error: str, *, next_attempt: float, give_up_after: int) -> bool:
        """Count a failed attempt and schedule the next; returns True if the entry failed
        for good (it stays visible as `failed`)."""
        row = self._run(
            "UPDATE objects SET attempts = attempts + 1, next_attempt = ?, last_error = ?, "
            "check_target = 1, updated = ?, "
            "state = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE state END "
            "WHERE key = ? AND state = 'pending' RETURNING state",
            (next_attempt, error[:2000], time.time(), give_up_after, key),
        ).fetchone()
        return bool(row and row[0] == FAILED)

    def recover(self) -> int:
        """After a restart, any pending copy may have been cut short: check the target first."""
        with self._tx():
            cur = self._run(
                "UPDATE objects SET check_target = 1 WHERE state = 'pending' AND check_target = 0"
            )
        return cur.rowcount

    def retry_failed(self) -> int:
        """Put every failed entry back in the backlog with a fresh attempt count."""
        with self._tx():
            cur = self._run(
                "UPDATE objects SET state = 'pending', attempts = 0, next_attempt = 0 "
                "WHERE state = 'failed'"
            )
        return cur.rowcount

    # -- reads ----------------------------------------------------------------------------
    def due(
        self, limit: int, *, now: float | None = None, exclude: Iterable[str] = ()
    ) -> list[LedgerEntry]:
        """Pending entries whose next attempt is due, oldest schedule first."""
        skip = exclude if isinstance(exclude, set) else set(exclude)
        rows = self._run(
            "SELECT key, sha256, size, attempts, check_target FROM objects "
            "WHERE state = 'pending' AND next_attempt <= ? ORDER BY next_attempt, key LIMIT ?",
            (time.time() if now is None else now, limit + len(skip)),
        ).fetchall()
        entries = [LedgerEntry(k, s, n, a, bool(c)) for k, s, n, a, c in rows if k not in skip]
        return entries[:limit]

    def next_due_time(self) -> float | None:
        """When the earliest pending entry is due (None when the backlog is empty)."""
        row = self._run("SELECT MIN(next_attempt) FROM objects WHERE state = 'pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def record(self, key: str) -> LedgerRecord | None:
        row = self._run("SELECT sha256, size, state FROM objects WHERE key = ?", (key,)).fetchone()
        return LedgerRecord(row[0], int(row[1]), row[2]) if row else None

    def records_between(self, after: str | None, last: str) -> dict[str, LedgerRecord]:
        """What the ledger remembers of every key in (`after`, `last`], in one query (the
        key range of a listing page)."""
        rows = self._run(
            "SELECT key, sha256, size, state FROM objects WHERE key > ? AND key <= ?",
            (after or "", last),
        ).fetchall()
        return {k: LedgerRecord(s, int(n), st) for k, s, n, st in rows}

    def backlog(self) -> int:
        """How many objects wait to be copied."""
        row = self._run("SELECT COUNT(*) FROM objects WHERE state = 'pending'").fetchone()
        return int(row[0])

    def counts(self) -> LedgerCounts:
        rows = self._run("SELECT state, COUNT(*) FROM objects GROUP BY state").fetchall()
        return LedgerCounts(**{state: int(n) for state, n in rows})

    def failures(self, limit: int = 20) -> list[tuple[str, int, str]]:
        """(key, attempts, last error) of failed or retrying entries, worst first."""
        rows = self._run(
            "SELECT key, attempts, COALESCE(last_error, '') FROM objects "
            "WHERE state = 'failed' OR (state = 'pending' AND attempts > 0) "
            "ORDER BY attempts DESC, key LIMIT ?",
            (limit,),
        ).fetchall()
        return [(k, int(a), e) for k, a, e in rows]

    # -- plumbing -------------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> _Rows:
        with self._lock:
            cursor = self._db.execute(sql, params)
            return _Rows(cursor.fetchall(), cursor.rowcount)

    def close(self) -> None:
        self._db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


class _Rows:
    """Rows fetched under the lock, so no cursor is stepped outside it."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows

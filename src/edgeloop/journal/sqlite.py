"""SQLite journal in WAL mode: one file per site, safe for one writer process and many readers."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from edgeloop.errors import JournalError
from edgeloop.journal.base import JournalEntry
from edgeloop.model.events import Event
from edgeloop.sqlite_wal import enable_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,  -- rowid: append-only, so max+1 is never reused
    id      TEXT NOT NULL UNIQUE,
    type    TEXT NOT NULL,
    site    TEXT NOT NULL,
    subject TEXT NOT NULL,
    time    TEXT NOT NULL,
    data    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type_seq ON events(type, seq);
CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
);
"""


class SQLiteJournal:
    """A Journal in one SQLite file; appends are durable when `append` returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path.absolute()}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            enable_wal(self._db.execute)
            # FULL: an acknowledged append survives power loss, not just a process crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc

    def append(self, event: Event) -> bool:
        return self.append_many([event]) == 1

    def append_many(self, events: Iterable[Event]) -> int:
        rows = [
            (e.id, e.type, e.site, e.subject, e.time.isoformat(), orjson.dumps(e.data))
            for e in events
        ]
        if not rows:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO events(id, type, site, subject, time, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                added = self._db.total_changes - before
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise JournalError(f"journal {self.path}: append failed: {exc}") from exc
        return added

    def read(
        self, after: int = 0, *, limit: int = 1000, types: Sequence[str] | None = None
    ) -> list[JournalEntry]:
        sql = "SELECT seq, id, type, site, subject, time, data FROM events WHERE seq > ?"
        params: list[object] = [after]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params.extend(types)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [
            JournalEntry(
                seq,
                Event.from_dict(
                    {
                        "id": id_,
                        "type": type_,
                        "site": site,
                        "subject": subject,
                        "time": time,
                        "data": orjson.loads(data),
                    }
                ),
            )
            for seq, id_, type_, site, subject, time, data in rows
        ]

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

    def cursor(self, consumer: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM cursors WHERE consumer = ?", (consumer,)
            ).fetchone()
        return int(row[0]) if row else 0

    def commit(self, consumer: str, seq: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors(consumer, seq) VALUES (?, ?) "
                "ON CONFLICT(consumer) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                (consumer, seq),
            )

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._db.close()

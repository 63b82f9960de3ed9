"""PostgreSQL journal: many journals in one database, safe for many writer processes.

Seqs are allocated under a table lock held until commit, so they are contiguous and a reader
never sees seq n+1 before seq n is visible: a consumer's cursor can never skip an event.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from edgeloop.errors import JournalError
from edgeloop.journal.base import JournalEntry
from edgeloop.model.events import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal_events (
    journal TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    id      TEXT NOT NULL,
    type    TEXT NOT NULL,
    site    TEXT NOT NULL,
    subject TEXT NOT NULL,
    time    TEXT NOT NULL,
    data    JSONB NOT NULL,
    PRIMARY KEY (journal, seq),
    UNIQUE (journal, id)
);
CREATE INDEX IF NOT EXISTS journal_events_type ON journal_events(journal, type, seq);
CREATE TABLE IF NOT EXISTS journal_cursors (
    journal  TEXT NOT NULL,
    consumer TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    PRIMARY KEY (journal, consumer)
);
"""

# One advisory-lock key for schema creation, so concurrent first starts do not race.
_SCHEMA_LOCK = 0x6564676C6F6F70


def split_journal_url(url: str) -> tuple[str, str]:
    """(connection URL, journal name) from `postgresql://.../db?journal=NAME` (default `core`)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    name = next((v for k, v in query if k == "journal"), "core")
    rest = urlencode([(k, v) for k, v in query if k != "journal"])
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), name


class PostgresJournal:
    """A Journal in a PostgreSQL database; `url` may name the journal with `?journal=NAME`."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._dsn, self.name = split_journal_url(url)
        self._lock = threading.Lock()
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        try:
            self._db = psycopg.connect(self._dsn, autocommit=True)
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self._db.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise JournalError(
                f"cannot open journal {self.name!r} at {self._redacted()}: {exc}; is PostgreSQL "
                "running and the URL right?"
            ) from exc

    def _redacted(self) -> str:
        parts = urlsplit(self._dsn)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def append(self, event: Event) -> bool:
        return self.append_many([event]) == 1

    def append_many(self, events: Iterable[Event]) -> int:
        rows: dict[str, tuple[Any, ...]] = {}
        for e in events:
            rows.setdefault(
                e.id, (e.id, e.type, e.site, e.subject, e.time.isoformat(), orjson.dumps(e.data))
            )
        if not rows:
            return 0
        with self._lock:
            try:
                with self._db.transaction():
                    # SHARE ROW EXCLUSIVE: one appender at a time, readers never blocked.
                    self._db.execute("LOCK TABLE journal_events IN SHARE ROW EXCLUSIVE MODE")
                    existing = {
                        r[0]
                        for r in self._db.execute(
                            "SELECT id FROM journal_events WHERE journal = %s AND id = ANY(%s)",
                            (self.name, list(rows)),
                        )
                    }
                    new = [row for key, row in rows.items() if key not in existing]
                    if not new:
                        return 0
                    top = self._db.execute(
                        "SELECT COALESCE(MAX(seq), 0) FROM journal_events WHERE journal = %s",
                        (self.name,),
                    ).fetchone()
                    start = int(top[0]) if top else 0
                    with self._db.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO journal_events"
                            "(journal, seq, id, type, site, subject, time, data) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                            [
                                (self.name, start + i, *row[:5], row[5].decode())
                                for i, row in enumerate(new, 1)
                            ],
                        )
            except self._errors as exc:
                raise JournalError(f"journal {self.name}: append failed: {exc}") from exc
        return len(new)

    def read(
        self, after: int = 0, *, limit: int = 1000, types: Sequence[str] | None = None
    ) -> list[JournalEntry]:
        sql = (
            "SELECT seq, id, type, site, subject, time, data FROM journal_events "
            "WHERE journal = %s AND seq > %s"
        )
        params: list[object] = [self.name, after]
        if types:
            sql += " AND type = ANY(%s)"
            params.append(list(types))
        sql += " ORDER BY seq LIMIT %s"
        params.append(limit)
        with self._lock:
            try:
                rows = self._db.execute(sql, params).fetchall()
            except self._errors as exc:
                raise JournalError(f"journal {self.name}: read failed: {exc}") from exc
        return [
            JournalEntry(
                int(seq),
                Event(
                    id=id_,
                    type=type_,
                    site=site,
                    subject=subject,
                    time=datetime.fromisoformat(time),
                    data=dict(data),
                ),
            )
            for seq, id_, type_, site, subject, time, data in rows
        ]

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM journal_events WHERE journal = %s",
                (self.name,),
            ).fetchone()
        return int(row[0]) if row else 0

    def cursor(self, consumer: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM journal_cursors WHERE journal = %s AND consumer = %s",
                (self.name, consumer),
            ).fetchone()
        return int(row[0]) if row else 0

    def commit(self, consumer: str, seq: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO journal_cursors(journal, consumer, seq) VALUES (%s, %s, %s) "
                "ON CONFLICT (journal, consumer) DO UPDATE "
                "SET seq = GREATEST(journal_cursors.seq, excluded.seq)",
                (self.name, consumer, seq),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

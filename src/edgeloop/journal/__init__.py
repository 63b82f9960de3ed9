"""Durable event journals: SQLite (WAL) by default, PostgreSQL at scale."""

from __future__ import annotations

from pathlib import Path

from edgeloop.errors import JournalError
from edgeloop.journal.base import EventSink, Journal, JournalEntry, JournalSink
from edgeloop.journal.sqlite import SQLiteJournal


def open_journal(url: str, *, base_dir: Path | None = None) -> Journal:
    """Open the journal a URL names: `sqlite:////abs/path.db`, `sqlite:///rel.db`, a path, or
    `postgresql://user@host/db?journal=NAME`."""
    if url.startswith("sqlite:///"):
        url = url.removeprefix("sqlite:///")  # SQLAlchemy style: sqlite:////abs, sqlite:///rel
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from edgeloop.journal.postgres import PostgresJournal

        return PostgresJournal(url.replace("postgresql+psycopg://", "postgresql://", 1))
    if "://" in url:
        raise JournalError(
            f"unknown journal URL {url!r}; use sqlite:///path/journal.db, a path, or "
            "postgresql://user@host/db"
        )
    path = Path(url)
    return SQLiteJournal(path if path.is_absolute() else (base_dir or Path.cwd()) / path)


__all__ = ["EventSink", "Journal", "JournalEntry", "JournalSink", "SQLiteJournal", "open_journal"]

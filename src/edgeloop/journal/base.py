"""The Journal interface: a durable, append-only, idempotent event log with consumer cursors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edgeloop.model.events import Event


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """An event with the position (`seq`, increasing from 1) the journal gave it."""

    seq: int
    event: Event


@runtime_checkable
class Journal(Protocol):
    """One site's event log; appending an event whose id is already there changes nothing."""

    url: str

    def append(self, event: Event) -> bool:
        """Append `event`; return False (and write nothing) if its id is already journaled."""
        ...

    def append_many(self, events: Iterable[Event]) -> int:
        """Append events in one transaction; return how many were new."""
        ...

    def read(
        self, after: int = 0, *, limit: int = 1000, types: Sequence[str] | None = None
    ) -> list[JournalEntry]:
        """Entries with seq > `after`, oldest first, at most `limit`, optionally by type."""
        ...

    def last_seq(self) -> int:
        """The highest seq written so far (0 when empty)."""
        ...

    def cursor(self, consumer: str) -> int:
        """The last seq `consumer` committed as handled (0 if none)."""
        ...

    def commit(self, consumer: str, seq: int) -> None:
        """Record that `consumer` has handled every entry up to `seq`; never moves backwards."""
        ...

    def close(self) -> None: ...


class EventSink(Protocol):
    """Where a component sends events it emits (a journal, or later the core's API)."""

    def emit(self, event: Event) -> bool:
        """Deliver `event`; return False if it was a duplicate."""
        ...


class JournalSink:
    """An EventSink that appends to a Journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def emit(self, event: Event) -> bool:
        return self.journal.append(event)

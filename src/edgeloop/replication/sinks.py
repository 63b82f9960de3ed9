"""Where `object.replicated` events go: any EventSink, delivered in batches when it can."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from edgeloop.journal.base import EventSink, Journal
from edgeloop.model.events import Event


@runtime_checkable
class BatchEventSink(Protocol):
    """An EventSink that can take many events at once (one transaction, one round trip)."""

    def emit(self, event: Event) -> bool: ...

    def emit_many(self, events: Sequence[Event]) -> int:
        """Deliver events idempotently by id; return how many were new."""
        ...


class JournalBatchSink:
    """Appends events to a journal, a batch per transaction (one fsync per batch)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def emit(self, event: Event) -> bool:
        return self.journal.append(event)

    def emit_many(self, events: Sequence[Event]) -> int:
        return self.journal.append_many(events)


class _OneByOne:
    """Adapts a plain EventSink (say, a future HTTP client of the core API) to batches."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    def emit(self, event: Event) -> bool:
        return self.sink.emit(event)

    def emit_many(self, events: Sequence[Event]) -> int:
        return sum(1 for event in events if self.sink.emit(event))


def as_batch_sink(sink: EventSink | Journal) -> BatchEventSink:
    """A batch sink for a journal, a batch sink, or any plain EventSink."""
    if isinstance(sink, BatchEventSink):
        return sink
    if hasattr(sink, "append_many"):
        return JournalBatchSink(sink)  # type: ignore[arg-type]
    return _OneByOne(sink)


class MemorySink:
    """Collects events in a list, idempotent by id (for tests and library users)."""

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.deliveries = 0

    def emit(self, event: Event) -> bool:
        self.deliveries += 1
        if event.id in self.events:
            return False
        self.events[event.id] = event
        return True

    def emit_many(self, events: Sequence[Event]) -> int:
        return sum(1 for event in events if self.emit(event))

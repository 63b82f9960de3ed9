"""A store wrapper that journals an `object.created` event for every object it writes."""

from __future__ import annotations

from edgeloop.journal.base import EventSink
from edgeloop.model.events import Event, EventType
from edgeloop.store.base import ForwardingStore, ObjectInfo, ObjectStore, PutData


class JournaledStore(ForwardingStore):
    """Writes through to `store`, then emits `object.created` (id = key@sha256) to `sink`.

    The event id is derived from key and digest, so re-putting the same bytes after a crash
    emits no second event, while a new version of a key is a new event.
    """

    def __init__(self, store: ObjectStore, sink: EventSink, site: str) -> None:
        super().__init__(store)
        self.sink = sink
        self.site = site

    @property
    def store(self) -> ObjectStore:
        """The store written through to."""
        return self.inner

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        info = self.inner.put(key, data, expected_sha256=expected_sha256)
        self.sink.emit(
            Event(
                id=f"created:{self.site}:{key}@{info.sha256}",
                type=EventType.OBJECT_CREATED,
                site=self.site,
                subject=key,
                data={"key": key, "size": info.size, "sha256": info.sha256},
            )
        )
        return info

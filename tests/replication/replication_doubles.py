"""Test doubles of a target store (counting, corrupting, unreachable) and a journaled source."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from edgeloop.errors import StoreUnavailable
from edgeloop.journal import SQLiteJournal
from edgeloop.model.events import Event, EventType
from edgeloop.store import LocalStore, ObjectStore
from edgeloop.store.base import ObjectInfo, ObjectReader, PutData, iter_chunks
from edgeloop.store.journaled import JournaledStore


class WrappedStore:
    """Delegates everything to `inner`; subclasses change one behaviour."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        self._count("put")
        return self.inner.put(key, data, expected_sha256=expected_sha256)

    def get(self, key: str) -> ObjectReader:
        self._count("get")
        return self.inner.get(key)

    def head(self, key: str) -> ObjectInfo:
        self._count("head")
        return self.inner.head(key)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        self._count("list")
        return self.inner.list(prefix, start_after=start_after)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


def _flip_first_byte(chunks: Iterable[bytes]) -> Iterator[bytes]:
    first = True
    for chunk in chunks:
        if first and chunk:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            first = False
        yield chunk


class CorruptingStore(WrappedStore):
    """Flips a byte of what it receives before the inner store's put sees it, for the first
    `times` puts (every put when None): corruption in transit."""

    def __init__(self, inner: ObjectStore, times: int | None) -> None:
        super().__init__(inner)
        self.times = times
        self.corrupted = 0

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        self._count("put")
        with self._lock:
            corrupt = self.times is None or self.corrupted < self.times
            if corrupt:
                self.corrupted += 1
        chunks = _flip_first_byte(iter_chunks(data)) if corrupt else data
        return self.inner.put(key, chunks, expected_sha256=expected_sha256)


class FlakyStore(WrappedStore):
    """Raises StoreUnavailable for every call while `down` is set: an unreachable target."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.down = threading.Event()
        self.refused = 0

    def _check(self) -> None:
        if self.down.is_set():
            with self._lock:
                self.refused += 1
            raise StoreUnavailable(f"{self.url}: connection refused (test double is down)")

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        self._check()
        return super().put(key, data, expected_sha256=expected_sha256)

    def head(self, key: str) -> ObjectInfo:
        self._check()
        return super().head(key)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        self._check()
        return super().list(prefix, start_after=start_after)


@dataclass
class Source:
    """An edge site: a directory store whose writes are journaled as object.created."""

    store: LocalStore
    journal: SQLiteJournal
    writer: JournaledStore

    def write(
        self, count: int, *, start: int = 0, size: int = 1000, prefix: str = "captures/m/"
    ) -> dict[str, bytes]:
        """Write `count` objects of random bytes and journal them in one transaction (as
        JournaledStore would, one by one); returns {key: bytes}."""
        written, events = {}, []
        for i in range(start, start + count):
            key = f"{prefix}{i:06d}.bin"
            data = os.urandom(size)
            info = self.store.put(key, data)
            events.append(
                Event(
                    id=f"created:edge-a:{key}@{info.sha256}",
                    type=EventType.OBJECT_CREATED,
                    site="edge-a",
                    subject=key,
                    data={"key": key, "size": info.size, "sha256": info.sha256},
                )
            )
            written[key] = data
        self.journal.append_many(events)
        return written


def target_objects(store: ObjectStore) -> dict[str, bytes]:
    """Every object a store shows, with its bytes."""
    out = {}
    for info in store.list():
        with store.get(info.key) as reader:
            out[info.key] = reader.read()
    return out

"""`memory://` store: a dict behind a lock, for unit tests and the in-process fleet."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

from edgeloop.errors import ObjectNotFound
from edgeloop.model.events import utcnow
from edgeloop.store.base import BytesReader, HashingReader, ObjectInfo, PutData, iter_chunks
from edgeloop.store.keys import validate_key, validate_prefix

# Named memory stores are shared inside one process so two URLs can reach the same bytes.
_NAMED: dict[str, MemoryStore] = {}
_NAMED_LOCK = threading.Lock()


class MemoryStore:
    """An in-memory ObjectStore with the same contract as the durable ones."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._objects: dict[str, tuple[ObjectInfo, bytes]] = {}
        self._sorted: list[str] = []
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """The process-wide store called `name` (created on first use)."""
        with _NAMED_LOCK:
            if name not in _NAMED:
                _NAMED[name] = cls(f"memory://{name}")
            return _NAMED[name]

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        validate_key(key)
        hashing = HashingReader(iter_chunks(data))
        body = b"".join(hashing)
        digest = hashing.check(key, expected_sha256)
        info = ObjectInfo(key=key, size=len(body), modified=utcnow(), sha256=digest, etag=digest)
        with self._lock:
            if key not in self._objects:
                bisect.insort(self._sorted, key)
            self._objects[key] = (info, body)
        return info

    def get(self, key: str) -> BytesReader:
        validate_key(key)
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise ObjectNotFound(f"{self.url}: no object at key {key!r}")
        return BytesReader(*found)

    def head(self, key: str) -> ObjectInfo:
        return self.get(key).info

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        with self._lock:
            keys = self._sorted
            lo = bisect.bisect_left(keys, prefix)
            if start_after is not None:
                lo = max(lo, bisect.bisect_right(keys, start_after))
            selected = []
            for key in keys[lo:]:
                if not key.startswith(prefix):
                    break
                selected.append(self._objects[key][0])
        yield from selected

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            if self._objects.pop(key, None) is not None:
                self._sorted.remove(key)

    def close(self) -> None:
        return None

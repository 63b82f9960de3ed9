"""The ObjectStore interface every store implements, and the values it returns."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from edgeloop.errors import ChecksumMismatch

CHUNK_SIZE = 1024 * 1024

# What `put` accepts: bytes, a binary file object, or an iterable of byte chunks (streaming).
PutData = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object; `sha256` is None when no writer recorded it."""

    key: str
    size: int
    modified: datetime
    sha256: str | None = None
    etag: str | None = None


@runtime_checkable
class ObjectReader(Protocol):
    """A streaming read of one object: iterate for chunks, or `read()` for all bytes."""

    info: ObjectInfo

    def __iter__(self) -> Iterator[bytes]: ...

    def read(self) -> bytes: ...

    def close(self) -> None: ...

    def __enter__(self) -> ObjectReader: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class ObjectStore(Protocol):
    """A flat key space of immutable-once-visible objects, each with its SHA-256 recorded.

    `put` makes an object visible atomically and only after its bytes hashed to
    `expected_sha256` (when given); `list` yields keys in lexicographic order.
    """

    url: str

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo: ...

    def get(self, key: str) -> ObjectReader: ...

    def head(self, key: str) -> ObjectInfo: ...

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...


class ForwardingStore:
    """A store that hands every call to `inner`; a wrapper overrides the calls it changes
    (JournaledStore emits an event after each put)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url

    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        return self.inner.put(key, data, expected_sha256=expected_sha256)

    def get(self, key: str) -> ObjectReader:
        return self.inner.get(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, start_after=start_after)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


@runtime_checkable
class SyncDeferringStore(Protocol):
    """A store that can batch the durability work of many puts: the view that
    `deferring_sync()` returns makes its objects visible at once, as always, and durable
    against power loss only when `sync()` is called (the directory store uses this)."""

    def deferring_sync(self) -> DeferredSyncView: ...


@runtime_checkable
class DeferredSyncView(ObjectStore, Protocol):
    """A store whose finished puts become durable at the next `sync()`."""

    def sync(self) -> None: ...


def iter_chunks(data: PutData, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the bytes of any PutData as chunks without reading a file object whole."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])
        return
    if hasattr(data, "read"):
        reader: BinaryIO = data  # type: ignore[assignment]
        while chunk := reader.read(chunk_size):
            yield chunk
        return
    for chunk in data:
        if chunk:
            yield bytes(chunk)


class HashingReader:
    """Wraps chunks, hashing them as they pass; `check()` raises on an unexpected digest."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._hash = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def check(self, key: str, expected: str | None) -> str:
        """Return the digest, raising ChecksumMismatch if it differs from `expected`."""
        digest = self.sha256
        if expected is not None and digest != expected.lower():
            raise ChecksumMismatch(
                f"{key}: received bytes hash to sha256 {digest}, expected {expected}; "
                "the copy was discarded, retry the transfer"
            )
        return digest


class BytesReader:
    """An ObjectReader over bytes already in memory."""

    def __init__(self, info: ObjectInfo, data: bytes, chunk_size: int = CHUNK_SIZE) -> None:
        self.info = info
        self._data = data
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        return iter_chunks(self._data, self._chunk_size)

    def read(self) -> bytes:
        return self._data

    def close(self) -> None:
        return None

    def __enter__(self) -> BytesReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sha256_bytes(data: bytes) -> str:
    """The hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def read_all(data: PutData) -> bytes:
    """All bytes of a PutData (for small objects and tests)."""
    if isinstance(data, bytes):
        return data
    buf = io.BytesIO()
    for chunk in iter_chunks(data):
        buf.write(chunk)
    return buf.getvalue()

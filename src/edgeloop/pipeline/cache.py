"""Step caching by input digests: same code and same inputs give the stored output."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

from edgeloop.errors import ObjectNotFound
from edgeloop.pipeline.dsl import Step


def cache_key(step: Step, input_digests: Mapping[str, str]) -> str:
    """The digest of a step's code and its inputs' digests, in parameter order."""
    h = hashlib.sha256()
    h.update(step.ref.encode() + b"\0" + step.code_digest.encode())
    for name in sorted(input_digests):
        h.update(b"\0" + name.encode() + b"=" + input_digests[name].encode())
    return h.hexdigest()


class StepCache(Protocol):
    """Where cached outputs live, keyed by `cache_key`."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


class MemoryCache:
    """A cache for one process (tests and benchmarks)."""

    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self._items.get(key)

    def put(self, key: str, value: bytes) -> None:
        self._items[key] = value


class StoreCache:
    """A cache in an object store under `pipelines/cache/`, shared by every executor."""

    def __init__(self, store: object, prefix: str = "pipelines/cache/") -> None:
        self._store = store
        self._prefix = prefix

    def get(self, key: str) -> bytes | None:
        try:
            data: bytes = self._store.get(self._prefix + key).read()  # type: ignore[attr-defined]
        except ObjectNotFound:
            return None
        return data

    def put(self, key: str, value: bytes) -> None:
        self._store.put(self._prefix + key, value)  # type: ignore[attr-defined]

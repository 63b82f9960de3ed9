"""Object stores: one interface, `file://`, `s3://` and `memory://` implementations."""

from __future__ import annotations

from pathlib import Path

from edgeloop.store.base import ObjectInfo, ObjectReader, ObjectStore, PutData, sha256_bytes
from edgeloop.store.keys import validate_key, validate_prefix
from edgeloop.store.local import LocalStore
from edgeloop.store.memory import MemoryStore
from edgeloop.store.url import SCHEMES, StoreURL, parse_store_url


def open_store(
    url: str,
    *,
    allowed: tuple[str, ...] = SCHEMES,
    base_dir: Path | None = None,
    create: bool = True,
) -> ObjectStore:
    """Open the store a URL names: `file:///dir` (or a bare path), `s3://bucket/prefix?...`,
    `memory://name`. With `create=False` a missing directory store is an error, not made."""
    parsed = parse_store_url(url, allowed=allowed, base_dir=base_dir)
    if parsed.scheme == "file":
        fsync = parsed.options.get("fsync", "1") != "0"
        return LocalStore(parsed.location, fsync=fsync, create=create)
    if parsed.scheme == "memory":
        return MemoryStore.named(parsed.location)
    from edgeloop.store.s3 import S3Store  # obstore loads lazily: file-only edges skip it

    return S3Store.from_url(parsed)


__all__ = [
    "SCHEMES",
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "ObjectReader",
    "ObjectStore",
    "PutData",
    "StoreURL",
    "open_store",
    "parse_store_url",
    "sha256_bytes",
    "validate_key",
    "validate_prefix",
]

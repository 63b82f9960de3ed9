"""Object stores: one interface, `file://`, `s3://` and `memory://` implementations."""

from __future__ import annotations

from pathlib import Path

from edgeloop.errors import InvalidKeyError
from edgeloop.settings import on_off
from edgeloop.store.base import ObjectInfo, ObjectReader, ObjectStore, PutData, sha256_bytes
from edgeloop.store.keys import validate_key, validate_prefix
from edgeloop.store.local import LocalStore
from edgeloop.store.memory import MemoryStore
from edgeloop.store.url import SCHEMES, StoreURL, parse_store_url

# `file://` URL options, all on/off, on by default: fsync each object before its rename;
# let a batch of copies make many objects durable with one syncfs (see LocalStore).
FILE_OPTIONS = ("fsync", "syncfs")


def _file_options(parsed: StoreURL) -> dict[str, bool]:
    unknown = sorted(set(parsed.options) - set(FILE_OPTIONS))
    if unknown:
        raise InvalidKeyError(
            f"refused store URL {parsed.raw!r}: unknown option(s) {', '.join(unknown)}; "
            f"a file:// store knows {', '.join(FILE_OPTIONS)} (each 1 or 0)"
        )
    flags: dict[str, bool] = {}
    for name in FILE_OPTIONS:
        raw = parsed.options.get(name, "1")
        value = on_off(raw)
        if value is None:
            raise InvalidKeyError(
                f"refused store URL {parsed.raw!r}: {name}={raw!r} is not on or off; "
                f"write {name}=1 or {name}=0"
            )
        flags[name] = value
    return flags


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
        options = _file_options(parsed)
        return LocalStore(parsed.location, **options, create=create)
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

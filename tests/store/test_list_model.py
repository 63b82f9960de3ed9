"""List ordering and start_after, checked against a plain sorted-list model on every store."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.errors import InvalidKeyError
from edgeloop.store import LocalStore, MemoryStore, ObjectStore, open_store, validate_key
from edgeloop.testing.s3server import S3Server

# A small alphabet with characters on both sides of '/' so directory walks are put to the test.
segment = st.text(alphabet="ab-+~ü0._", min_size=1, max_size=3)
key = st.lists(segment, min_size=1, max_size=3).map("/".join)
bound = st.text(alphabet="ab-+~ü0._/", max_size=5)

_buckets = itertools.count()


def _valid(k: str) -> bool:
    try:
        validate_key(k)
    except InvalidKeyError:
        return False
    return True


def _without_conflicts(keys: list[str]) -> list[str]:
    """Drop keys that are a prefix directory of another: a file system cannot hold both."""
    chosen: list[str] = []
    for k in sorted({k for k in keys if _valid(k)}):
        if not any(k.startswith(c + "/") or c.startswith(k + "/") for c in chosen):
            chosen.append(k)
    return chosen


def _model(keys: list[str], prefix: str, start_after: str | None) -> list[str]:
    return [
        k for k in sorted(keys) if k.startswith(prefix) and (start_after is None or k > start_after)
    ]


def _check(
    make: Callable[[], ObjectStore], keys: list[str], prefix: str, after: str | None
) -> None:
    if prefix and not _valid(prefix.rstrip("/") or "x"):
        return
    store = make()
    present = _without_conflicts(keys)
    for k in present:
        store.put(k, k.encode())
    try:
        got = [i.key for i in store.list(prefix, start_after=after)]
    except InvalidKeyError:
        return  # an unsafe prefix is refused, never listed
    assert got == _model(present, prefix, after)
    store.close()


@given(st.lists(key, max_size=12), bound, st.none() | bound)
@settings(max_examples=150)
def test_memory_list_matches_model(keys: list[str], prefix: str, after: str | None) -> None:
    _check(MemoryStore, keys, prefix, after)


@given(st.lists(key, max_size=12), bound, st.none() | bound)
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_file_list_matches_model(keys: list[str], prefix: str, after: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check(lambda: LocalStore(Path(tmp) / "s", fsync=False), keys, prefix, after)


@pytest.fixture(scope="module")
def s3_maker(s3_server: S3Server) -> Callable[[], ObjectStore]:
    return lambda: open_store(s3_server.url(f"model-{next(_buckets)}"))


@given(st.lists(key, max_size=8), bound, st.none() | bound)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_s3_list_matches_model(
    s3_maker: Callable[[], ObjectStore], keys: list[str], prefix: str, after: str | None
) -> None:
    _check(s3_maker, keys, prefix, after)

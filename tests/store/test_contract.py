"""The ObjectStore contract, run against memory://, file:// and a real S3 server (rclone)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections.abc import Iterator

import pytest

from edgeloop.errors import ChecksumMismatch, InvalidKeyError, ObjectNotFound
from edgeloop.store import ObjectStore, sha256_bytes
from edgeloop.store.s3 import SINGLE_PUT_MAX, S3Store

MiB = 1024 * 1024


def keys(store: ObjectStore, prefix: str = "", start_after: str | None = None) -> list[str]:
    return [info.key for info in store.list(prefix, start_after=start_after)]


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_put_then_get_head_return_bytes_size_and_sha256(store: ObjectStore) -> None:
    data = b"hello edge\n" * 100
    info = store.put("captures/m/a.bin", data)
    assert info.key == "captures/m/a.bin"
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()

    with store.get("captures/m/a.bin") as reader:
        assert reader.info.size == len(data)
        assert reader.info.sha256 == info.sha256
        assert reader.read() == data
    head = store.head("captures/m/a.bin")
    assert (head.key, head.size, head.sha256) == ("captures/m/a.bin", len(data), info.sha256)
    assert head.modified.tzinfo is not None


def test_empty_object(store: ObjectStore) -> None:
    info = store.put("empty", b"")
    assert info.size == 0
    assert info.sha256 == sha256_bytes(b"")
    assert store.get("empty").read() == b""
    assert store.head("empty").size == 0


def test_put_accepts_file_objects_bytearrays_and_iterables(store: ObjectStore) -> None:
    data = os.urandom(3000)
    store.put("from/file", io.BytesIO(data))
    store.put("from/bytearray", bytearray(data))
    store.put("from/memoryview", memoryview(data))
    store.put("from/iter", chunked(data, 7))
    for key in keys(store, "from/"):
        assert store.get(key).read() == data, key
        assert store.head(key).sha256 == sha256_bytes(data), key


def test_missing_keys_raise_object_not_found(store: ObjectStore) -> None:
    store.put("present/x", b"1")
    for key in ("absent", "present/y", "present"):
        with pytest.raises(ObjectNotFound, match=re.escape(repr(key))):
            store.get(key)
        with pytest.raises(ObjectNotFound):
            store.head(key)


def test_overwrite_replaces_bytes_and_digest(store: ObjectStore) -> None:
    store.put("k", b"first version, longer than the second")
    info = store.put("k", b"second")
    assert store.get("k").read() == b"second"
    assert store.head("k").sha256 == info.sha256 == sha256_bytes(b"second")
    assert keys(store) == ["k"]


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("a/b", b"x")
    store.put("a/c", b"y")
    store.delete("a/b")
    store.delete("a/b")
    store.delete("never/existed")
    with pytest.raises(ObjectNotFound):
        store.get("a/b")
    assert keys(store) == ["a/c"]
    store.delete("a/c")
    assert keys(store) == []


def test_list_is_lexicographic_with_prefix_and_start_after(store: ObjectStore) -> None:
    # '+' and '-' sort before '/', so a directory walk that visits "a/" first would be wrong.
    names = ["a-b", "a+b", "a/x", "a/y/z", "a0", "b", "captures/m/1", "captures/m/2", "captures/n"]
    for name in reversed(names):
        store.put(name, name.encode())
    assert keys(store) == sorted(names)
    assert keys(store, "a") == ["a+b", "a-b", "a/x", "a/y/z", "a0"]
    assert keys(store, "a/") == ["a/x", "a/y/z"]
    assert keys(store, "captures/") == ["captures/m/1", "captures/m/2", "captures/n"]
    assert keys(store, "captures/m") == ["captures/m/1", "captures/m/2"]
    assert keys(store, "captures/m/2") == ["captures/m/2"]
    assert keys(store, "zzz") == []
    assert keys(store, start_after="a0") == ["b", "captures/m/1", "captures/m/2", "captures/n"]
    assert keys(store, start_after="a/") == ["a/x", "a/y/z", "a0", *sorted(names)[5:]]
    assert keys(store, "captures/", start_after="captures/m/1") == ["captures/m/2", "captures/n"]
    assert keys(store, "captures/", start_after="captures/m/") == [
        "captures/m/1",
        "captures/m/2",
        "captures/n",
    ]
    assert keys(store, "a/", start_after="b") == []
    assert keys(store, start_after="") == sorted(names)


def test_list_reports_sizes(store: ObjectStore) -> None:
    store.put("s/one", b"1")
    store.put("s/three", b"333")
    assert [(i.key, i.size) for i in store.list("s/")] == [("s/one", 1), ("s/three", 3)]


def test_unicode_and_punctuation_keys_round_trip(store: ObjectStore) -> None:
    names = ["données/été.csv", "ключ/файл", "日本/データ.bin", "sp ace/x#y", "a+b=c&d.txt"]
    for name in names:
        store.put(name, name.encode())
    for name in names:
        assert store.get(name).read() == name.encode()
    assert keys(store) == sorted(names)
    assert keys(store, "données/") == ["données/été.csv"]


def test_expected_sha256_match_is_accepted_in_any_case(store: ObjectStore) -> None:
    data = b"payload"
    info = store.put("ok", data, expected_sha256=sha256_bytes(data).upper())
    assert info.sha256 == sha256_bytes(data)
    assert store.head("ok").sha256 == sha256_bytes(data)


def test_checksum_mismatch_leaves_nothing_visible(store: ObjectStore) -> None:
    with pytest.raises(ChecksumMismatch, match="bad/small"):
        store.put("bad/small", b"tampered", expected_sha256=sha256_bytes(b"original"))
    with pytest.raises(ObjectNotFound):
        store.head("bad/small")
    assert keys(store) == []


def test_streaming_checksum_mismatch_leaves_old_version_intact(store: ObjectStore) -> None:
    old = b"old version"
    store.put("model/weights", old)
    big = os.urandom(SINGLE_PUT_MAX + 3 * MiB)  # large enough to go up as multipart on S3
    with pytest.raises(ChecksumMismatch):
        store.put("model/weights", chunked(big, MiB), expected_sha256=sha256_bytes(b"other"))
    assert store.get("model/weights").read() == old
    assert store.head("model/weights").sha256 == sha256_bytes(old)
    with pytest.raises(ChecksumMismatch):
        store.put("model/new", chunked(big, MiB), expected_sha256=sha256_bytes(b"other"))
    assert keys(store) == ["model/weights"]


@pytest.mark.parametrize("with_expected", [False, True], ids=["unhashed", "expected"])
def test_large_object_streams_both_ways(store: ObjectStore, with_expected: bool) -> None:
    big = os.urandom(SINGLE_PUT_MAX + 5 * MiB + 17)
    digest = sha256_bytes(big)
    expected = digest if with_expected else None
    info = store.put("big/blob", chunked(big, MiB), expected_sha256=expected)
    assert (info.size, info.sha256) == (len(big), digest)
    assert store.head("big/blob").sha256 == digest
    hasher = hashlib.sha256()
    count = 0
    with store.get("big/blob") as reader:
        assert reader.info.sha256 == digest
        for chunk in reader:
            hasher.update(chunk)
            count += 1
    assert hasher.hexdigest() == digest
    assert count > 1, "get must stream in chunks, not hand back one buffer"


@pytest.mark.parametrize(
    "bad",
    [
        "../escape",
        "a/../../b",
        "%2e%2e/x",
        "a/%252e%252e/b",
        "/abs",
        "C:\\x",
        "a\\b",
        "a\x00b",
        "file:///etc/passwd",
        "a//b",
        "a/",
        ".edgeloop-tmp/x",
        "",
    ],
)
def test_unsafe_keys_are_refused_by_every_operation(store: ObjectStore, bad: str) -> None:
    for operation in (
        lambda: store.put(bad, b"x"),
        lambda: store.get(bad),
        lambda: store.head(bad),
        lambda: store.delete(bad),
    ):
        with pytest.raises(InvalidKeyError, match="refused object key"):
            operation()
    assert keys(store) == []


@pytest.mark.parametrize("bad", ["../", "%2e%2e/", "/", "/abs/", "a\\b/"])
def test_unsafe_prefixes_are_refused(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        keys(store, bad)


def test_concurrent_overwrites_and_reads_see_whole_versions(store: ObjectStore) -> None:
    if isinstance(store, S3Store):
        # Real S3 makes overwrites atomic, but the test server does not: rclone serve s3
        # writes in place, so readers racing a writer of the same key get torn bodies and
        # listings show the key twice. Nothing in S3Store can hide that; skip, loudly.
        pytest.skip("rclone serve s3 is not atomic for concurrent overwrites of one key")
    versions = {sha256_bytes(v): v for v in (os.urandom(n) for n in (10, 70_000, 300_000, 1))}
    store.put("hot/key", next(iter(versions.values())))
    problems: list[str] = []

    def writer(seed: int) -> None:
        blobs = list(versions.values())
        for i in range(8):
            store.put("hot/key", blobs[(seed + i) % len(blobs)])

    def reader() -> None:
        for _ in range(12):
            with store.get("hot/key") as r:
                body = r.read()
                digest = sha256_bytes(body)
                if digest not in versions or r.info.sha256 != digest:
                    problems.append(
                        f"read {len(body)} bytes hashing to {digest[:12]} (known: "
                        f"{digest in versions}), metadata says {(r.info.sha256 or '-')[:12]}"
                    )

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert keys(store, "hot/") == ["hot/key"]

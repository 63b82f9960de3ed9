"""When the directory store fsyncs directories: after each put, or once per batch in a
`deferring_sync()` view; and its cache of checked parent directories never lets a symlink
swapped in later lead outside the root."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import edgeloop.store.local as local_module
import edgeloop.store.syncfs as syncfs_module
from edgeloop.errors import ChecksumMismatch, InvalidKeyError, StoreError
from edgeloop.store import LocalStore
from edgeloop.store.base import sha256_bytes


@pytest.fixture
def synced_dirs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every directory the store fsyncs, in order (the real fsync still runs)."""
    calls: list[Path] = []
    lock = threading.Lock()
    real = local_module._fsync_dir

    def record(path: Path) -> None:
        real(path)
        with lock:
            calls.append(Path(path))

    monkeypatch.setattr(local_module, "_fsync_dir", record)
    return calls


def test_plain_put_syncs_its_directory_and_every_directory_it_made(
    tmp_path: Path, synced_dirs: list[Path]
) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("a/b/c.bin", b"x")
    root = store.root
    # The new entries "a" (in root), "b" (in a) and "c.bin" (in b) must all survive a crash.
    assert sorted(synced_dirs) == sorted([root, root / "a", root / "a" / "b"])
    synced_dirs.clear()
    store.put("a/b/d.bin", b"y")
    assert synced_dirs == [root / "a" / "b"]


def test_deferring_view_syncs_each_touched_directory_once_at_sync(
    tmp_path: Path, synced_dirs: list[Path]
) -> None:
    store = LocalStore(tmp_path / "s")
    view = store.deferring_sync()
    for i in range(50):
        view.put(f"p/{i % 2}/{i}.bin", b"z" * i)
    assert synced_dirs == []
    # Visible at once, through the view and the store: only the durability waits.
    assert store.get("p/1/49.bin").read() == b"z" * 49
    view.sync()
    root = store.root
    assert sorted(synced_dirs) == sorted([root, root / "p", root / "p" / "0", root / "p" / "1"])
    # Deepest first: a directory's entry in its parent is synced after its own entries.
    assert synced_dirs.index(root / "p" / "0") < synced_dirs.index(root / "p")
    synced_dirs.clear()
    view.sync()
    assert synced_dirs == []
    # The store itself still syncs every put on its own.
    store.put("p/0/plain.bin", b"q")
    assert synced_dirs == [root / "p" / "0"]


def test_deferring_view_covers_objects_it_found_by_head(
    tmp_path: Path, synced_dirs: list[Path]
) -> None:
    # A copy renamed in by a writer killed before its sync, then found by HEAD on restart
    # and taken as done: the next sync must cover that rename too.
    LocalStore(tmp_path / "s", fsync=False).put("k/found.bin", b"there")
    view = LocalStore(tmp_path / "s").deferring_sync()
    view.head("k/found.bin")
    view.sync()
    assert synced_dirs == [view.root / "k"]


def test_without_fsync_nothing_is_synced(tmp_path: Path, synced_dirs: list[Path]) -> None:
    view = LocalStore(tmp_path / "s", fsync=False).deferring_sync()
    view.put("a/b", b"x")
    view.head("a/b")
    view.sync()
    assert synced_dirs == []


def test_directory_swapped_for_a_symlink_after_use_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"do not read")
    store = LocalStore(tmp_path / "root")
    store.put("a/b/first.txt", b"inside")
    assert store.get("a/b/first.txt").read() == b"inside"  # the parent is checked and cached
    (store.root / "a" / "b").rename(tmp_path / "moved")
    (store.root / "a" / "b").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKeyError, match="outside the store root"):
        store.put("a/b/planted.txt", b"x")
    with pytest.raises(InvalidKeyError, match="outside the store root"):
        store.get("a/b/secret.txt")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_deleted_parent_is_made_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("d/e/one", b"1")
    store.delete("d/e/one")  # tidies the empty d/e and d away
    assert not (store.root / "d").exists()
    store.put("d/e/two", b"2")
    assert store.get("d/e/two").read() == b"2"


def test_object_and_prefix_clashes_are_still_clear_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("x/y", b"1")
    with pytest.raises(StoreError, match="prefix of other objects"):
        store.put("x", b"2")
    with pytest.raises(StoreError, match="parent of it is an object"):
        store.put("x/y/z", b"3")
    assert [i.key for i in store.list()] == ["x/y"]
    assert list((store.root / ".edgeloop-tmp").iterdir()) == []


def test_digest_is_kept_as_32_raw_bytes_and_the_hex_form_still_reads(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    info = store.put("new/obj", b"payload")
    raw = os.getxattr(store.root / "new" / "obj", local_module.SHA_XATTR)
    assert raw == bytes.fromhex(info.sha256 or "")
    # An object written by an older edgeloop, digest as 64 hex characters.
    old = store.root / "old" / "obj"
    old.parent.mkdir()
    old.write_bytes(b"payload")
    os.setxattr(old, local_module.SHA_XATTR, (info.sha256 or "").encode("ascii"))
    assert store.head("old/obj").sha256 == info.sha256
    assert store.get("old/obj").info.sha256 == info.sha256
    assert {i.key: i.sha256 for i in store.list()} == {
        "new/obj": info.sha256,
        "old/obj": info.sha256,
    }


def test_large_put_starts_writeback_as_it_goes_only_when_fsyncing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kicks: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        kicks.append((offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", record)
    step = local_module.WRITEBACK_STEP
    data = os.urandom(2 * step + step // 2)
    info = LocalStore(tmp_path / "s").put("big/obj", data)
    assert LocalStore(tmp_path / "s").get("big/obj").read() == data
    assert info.size == len(data)
    assert kicks == [(0, step), (step, step)]  # contiguous, the tail is left to the fsync
    kicks.clear()
    LocalStore(tmp_path / "nosync", fsync=False).put("big/obj", data)
    assert kicks == []


def _descriptors_on(path: Path) -> int:
    """How many of this process's descriptors are open on `path` (other tests' threads may
    open and close unrelated ones meanwhile, so count only these)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:
            continue  # closed while we looked
    return count


def test_a_reader_closes_its_descriptor_once_and_a_dropped_one_does_not_leak(
    tmp_path: Path,
) -> None:
    import gc

    store = LocalStore(tmp_path / "s")
    store.put("a/b", b"x" * 100_000)
    path = (tmp_path / "s" / "a" / "b").resolve()
    with store.get("a/b") as reader:
        assert _descriptors_on(path) == 1
        assert reader.read() == b"x" * 100_000
    assert _descriptors_on(path) == 0
    reader.close()  # a second close is harmless
    with pytest.raises(ValueError, match="closed"):
        list(reader)
    streams = [iter(store.get("a/b")) for _ in range(20)]  # readers dropped mid-stream
    for stream in streams:
        next(stream)
    assert _descriptors_on(path) == 20
    del stream, streams
    gc.collect()
    assert _descriptors_on(path) == 0


def _temp_files(store: LocalStore) -> list[str]:
    return sorted(os.listdir(store.root / local_module.TMP_DIR))


def test_a_staged_put_is_invisible_until_committed_and_abort_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "s")
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])

    staged = store.stage("a/b.bin", b"bytes")
    assert staged.info.size == 5 and staged.info.sha256 == sha256_bytes(b"bytes")
    assert list(store.list()) == [] and len(_temp_files(store)) == 1
    assert fsyncs == []  # the file is synced by commit, right before its rename
    assert staged.commit() == staged.info
    assert store.get("a/b.bin").read() == b"bytes" and _temp_files(store) == []
    assert staged.fd in fsyncs

    dropped = store.stage("c.bin", b"other")
    dropped.abort()
    assert [i.key for i in store.list()] == ["a/b.bin"] and _temp_files(store) == []


def test_a_stage_that_fails_its_digest_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    with pytest.raises(ChecksumMismatch):
        store.stage("a.bin", b"bytes", expected_sha256="0" * 64)
    assert _temp_files(store) == [] and list(store.list()) == []


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every descriptor the store fsyncs (the real fsync still runs)."""
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    return calls


needs_syncfs = pytest.mark.skipif(
    not syncfs_module.available(), reason="syncfs reports errors on Linux 5.8+ only"
)


@needs_syncfs
def test_staged_puts_committed_together_take_one_syncfs_and_no_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsynced: list[int]
) -> None:
    store = LocalStore(tmp_path / "s").deferring_sync()  # directories: no fsync here
    flushed: list[int] = []
    real = syncfs_module.syncfs
    monkeypatch.setattr(syncfs_module, "syncfs", lambda fd: (flushed.append(fd), real(fd))[1])
    staged = [store.stage(f"k/{i}.bin", bytes([i]) * 10) for i in range(3)]
    infos = store.commit_together(staged)
    assert infos == [s.info for s in staged]
    assert flushed == [staged[0].fd]  # the first opened: it sees errors of all three
    assert fsynced == []
    assert [store.get(f"k/{i}.bin").read() for i in range(3)] == [bytes([i]) * 10 for i in range(3)]
    assert _temp_files(store) == []


@pytest.mark.parametrize("option", ["syncfs=0", "one object"])
def test_commit_together_fsyncs_each_object_without_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsynced: list[int], option: str
) -> None:
    monkeypatch.setattr(syncfs_module, "syncfs", lambda fd: pytest.fail("syncfs called"))
    store = LocalStore(tmp_path / "s", syncfs=option != "syncfs=0").deferring_sync()
    staged = [store.stage(f"{i}.bin", b"x") for i in range(2 if option == "syncfs=0" else 1)]
    assert store.commit_together(staged) == [s.info for s in staged]
    assert fsynced == [s.fd for s in staged]


@needs_syncfs
def test_a_failed_syncfs_falls_back_to_an_fsync_each_and_fails_only_the_bad_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path / "s")
    staged = [store.stage(f"{i}.bin", b"x") for i in range(3)]
    bad = staged[1].fd

    def syncfs(fd: int) -> None:  # e.g. another program's file failed its writeback
        raise OSError(errno.EIO, "Input/output error")

    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if fd == bad:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(syncfs_module, "syncfs", syncfs)
    monkeypatch.setattr(os, "fsync", fsync)
    outcomes = store.commit_together(staged)
    assert outcomes[0] == staged[0].info and outcomes[2] == staged[2].info
    assert isinstance(outcomes[1], OSError) and outcomes[1].errno == errno.EIO
    assert sorted(i.key for i in store.list()) == ["0.bin", "2.bin"]
    assert _temp_files(store) == []
    assert "syncfs failed" in caplog.text


def test_syncfs_is_used_only_where_it_reports_errors() -> None:
    assert syncfs_module._kernel_version("5.7.19-generic") < syncfs_module.MIN_KERNEL
    assert syncfs_module._kernel_version("5.8.0") >= syncfs_module.MIN_KERNEL
    assert syncfs_module._kernel_version("6.18.44-fc-v669") == (6, 18)
    assert syncfs_module._kernel_version("weird") is None

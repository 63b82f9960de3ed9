"""`file://` store: a directory where objects appear by atomic rename, never torn."""

from __future__ import annotations

import contextlib
import copy
import errno
import itertools
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgeloop.errors import InvalidKeyError, ObjectNotFound, StoreError
from edgeloop.store import syncfs as syncfs_module
from edgeloop.store.base import CHUNK_SIZE, HashingReader, ObjectInfo, PutData, iter_chunks
from edgeloop.store.keys import RESERVED_PREFIX, validate_key, validate_prefix

log = logging.getLogger(__name__)

TMP_DIR = f"{RESERVED_PREFIX}-tmp"
SHA_XATTR = "user.edgeloop.sha256"
# A temp file this old belongs to a writer that died (puts take seconds, not an hour).
STALE_TEMP_SECONDS = 3600.0
# While a large object is written, start writing it to disk every this many bytes, so the
# fsync at the end waits for the last part only.
WRITEBACK_STEP = 8 * 1024 * 1024
# Directories whose containment in the root was checked, remembered by inode (bounded).
PARENT_CACHE_SIZE = 4096


def _read_sha(fd_or_path: int | str) -> str | None:
    try:
        value = os.getxattr(fd_or_path, SHA_XATTR)
    except OSError:
        return None
    if len(value) == 32:
        return value.hex()
    # Stores written before the digest was kept as raw bytes hold it as 64 hex characters.
    return value.decode("ascii", "replace") if len(value) == 64 else None


def _sha_xattr(digest: str) -> bytes:
    # The 32 raw bytes, not 64 hex characters: on ext4 with 256-byte inodes they fit inside
    # the inode, where the hex form needs a 4 KiB block of its own for every object.
    return bytes.fromhex(digest)


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _start_writeback(fd: int, start: int, end: int) -> int:
    """Ask the kernel to start writing bytes [start, end) of `fd` to disk, without waiting;
    returns `end`. (POSIX_FADV_DONTNEED starts writeback of dirty pages; pages still dirty or
    under writeback stay cached.)"""
    with contextlib.suppress(OSError, AttributeError):  # an optimisation only
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
    return end


def _make_dirs(directory: Path, root: Path, changed: list[str]) -> None:
    """`mkdir -p` below `root`, appending to `changed` the parent of each directory made."""
    if directory == root:
        return
    try:
        directory.mkdir()
    except FileNotFoundError:
        _make_dirs(directory.parent, root, changed)
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it meanwhile
            directory.mkdir()
    except FileExistsError:
        if not directory.is_dir():
            raise
        return
    changed.append(str(directory.parent))


class FileReader:
    """Streams one file from an open descriptor, so a concurrent replace cannot tear it."""

    # Plain os.read on the descriptor, not io.FileIO: its constructor and readall add an
    # fstat and lseeks to every get (a fifth of the syscalls of a small object's copy).
    def __init__(self, info: ObjectInfo, fd: int) -> None:
        self.info = info
        self._fd: int | None = fd

    def __iter__(self) -> Iterator[bytes]:
        fd = self._open_fd()
        # Ask for one byte more than the object holds (up to a chunk): a small object then
        # comes in one read into a buffer of its size, not a 1 MiB one, and the short read
        # says it has ended.
        want = min(CHUNK_SIZE, self.info.size + 1)
        while chunk := os.read(fd, want):
            yield chunk
            if len(chunk) < want:
                return  # a short read of a regular file is its end: spare the empty read
            want = CHUNK_SIZE

    def read(self) -> bytes:
        return b"".join(self)

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError("read of a closed object reader")
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A reader dropped without close (an abandoned stream) must not leak its descriptor.
        with contextlib.suppress(OSError, AttributeError):
            self.close()


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


@dataclass
class StagedPut:
    """A put written to its temp file and checked, not yet visible (see LocalStore.stage)."""

    store: LocalStore
    info: ObjectInfo
    fd: int
    tmp: str
    path: str
    parent: str
    parent_known: bool

    def commit(self) -> ObjectInfo:
        """Make the object durable (when the store fsyncs), then visible; once only."""
        return self.store._commit(self)

    def abort(self) -> None:
        """Drop the staged bytes; the object is not written."""
        os.close(self.fd)
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)  # noqa: PTH108 - text paths on the hot path


class LocalStore:
    """An ObjectStore in a directory: write to a temp file, fsync, rename, fsync the directory.

    The SHA-256 of each object is kept in the `user.edgeloop.sha256` extended attribute (its
    32 raw bytes), set before the rename so the digest becomes visible with the bytes.
    """

    def __init__(
        self, root: str | Path, *, fsync: bool = True, syncfs: bool = True, create: bool = True
    ) -> None:
        self.root = Path(root).absolute()
        self.url = f"file://{self.root}"
        self.fsync = fsync
        # Whether `commit_together` may flush the whole file system once instead of each file.
        self.syncfs = syncfs
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"{self.url}: cannot create the store directory ({exc.strerror}); "
                    "choose a directory path that is free or already a store"
                ) from None
        if not self.root.is_dir():
            raise StoreError(
                f"{self.url}: no such store directory; check the path (writes create it)"
            )
        self._real_root = self.root.resolve()
        self._tmp = self.root / TMP_DIR
        # The hot paths (get, put) join plain strings: pathlib's parsing cost about 30 µs per
        # copy of a small object, a tenth of its CPU time.
        self._root_text = str(self.root)
        self._tmp_text = str(self._tmp)
        # Relative parent -> (st_dev, st_ino) of the real directory it resolved to inside root.
        self._parents: dict[str, tuple[int, int]] = {}
        # Deferred directory syncs (see `deferring_sync`); None: every put syncs its directory.
        self._unsynced: set[str] | None = None
        self._sync_lock = threading.Lock()
        # Temp names: random per store instance, then counted (no random draw per put).
        self._tmp_prefix = uuid.uuid4().hex
        self._tmp_counter = itertools.count()
        self.sweep_temp()

    def reopened(self) -> LocalStore:
        """A new instance of this store with the same options (and its own temp names), for
        another process to write with: a forked copy process."""
        return LocalStore(self.root, fsync=self.fsync, syncfs=self.syncfs, create=False)

    def deferring_sync(self) -> LocalStore:
        """A view of this store whose puts leave the directory fsync to `sync()`.

        Each put still fsyncs its file before the rename, so no object is ever torn; what
        waits is only the durability of the rename itself, which `sync()` then provides for
        many puts at once (one fsync per directory touched).
        """
        view = copy.copy(self)
        view._unsynced = set()
        view._sync_lock = threading.Lock()
        return view

    def sync(self) -> None:
        """Make every put that has returned durable (fsync the directories they renamed in)."""
        # Deepest first: a directory made by a put is synced before the entry naming it.
        for directory in sorted(self.take_unsynced(), key=lambda d: d.count(os.sep), reverse=True):
            with contextlib.suppress(FileNotFoundError):  # tidied away by a delete since
                _fsync_dir(directory)

    def take_unsynced(self) -> list[str]:
        """Empty this view's list of directories waiting for `sync()` and return it, for
        another process to sync (a copy process hands them to its replicator)."""
        if self._unsynced is None:
            return []
        with self._sync_lock:
            directories, self._unsynced = self._unsynced, set()
        return sorted(directories)

    def add_unsynced(self, directories: Sequence[str]) -> None:
        """Directories of this store that another process renamed objects into, to be
        synced by the next `sync()` (at once, on a store that does not defer syncs)."""
        root = self._root_text
        if any(d != root and not d.startswith(root + "/") for d in directories):
            raise StoreError(f"{self.url}: a directory to sync is outside the store")
        if self.fsync:
            self._sync_dirs(list(directories))

    def sweep_temp(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Remove temp files a crashed writer left behind; returns how many were removed.

        Only files older than `older_than` seconds go, so a put in flight in another process
        keeps its temp file.
        """
        removed = 0
        cutoff = time.time() - older_than
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return 0
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    Path(entry.path).unlink()
                    removed += 1
        return removed

    # -- paths ---------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return Path(self._locate(key)[0])

    def _locate(self, key: str) -> tuple[str, str, bool]:
        """The file path of `key`, its parent directory, and whether that parent is a known
        directory inside the root; raises for keys that are refused or lead outside."""
        validate_key(key)  # no empty, `.` or `..` parts: joining the text is safe
        parent_rel, _, _ = key.rpartition("/")
        path = f"{self._root_text}/{key}"
        if not parent_rel:
            return path, self._root_text, True
        parent = f"{self._root_text}/{parent_rel}"
        known = self._parents.get(parent_rel)
        if known is not None:
            # The same directory as when it was checked: a swapped-in symlink has another inode.
            try:
                st = os.stat(parent)  # noqa: PTH116 - text paths on the hot path (init)
            except OSError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == known:
                return path, parent, True
        # A symlinked directory inside the root must not lead writes or reads outside it.
        resolved = Path(parent).resolve()
        if not self._inside(resolved):
            raise InvalidKeyError(f"refused object key {key!r}: it resolves outside the store root")
        try:
            st = resolved.stat()
        except OSError:
            return path, parent, False  # not made yet (a put makes it)
        if not stat.S_ISDIR(st.st_mode):
            return path, parent, False
        if len(self._parents) >= PARENT_CACHE_SIZE:
            self._parents.clear()
        self._parents[parent_rel] = (st.st_dev, st.st_ino)
        return path, parent, True

    def _inside(self, resolved: Path) -> bool:
        return resolved == self._real_root or self._real_root in resolved.parents

    @staticmethod
    def _info(key: str, st: os.stat_result, sha: str | None) -> ObjectInfo:
        modified = datetime.fromtimestamp(st.st_mtime, UTC)
        return ObjectInfo(key=key, size=st.st_size, modified=modified, sha256=sha, etag=sha)

    # -- interface -----------------------------------------------------------------------
    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        return self.stage(key, data, expected_sha256=expected_sha256).commit()

    def stage(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> StagedPut:
        """The first half of a put: write `data` to a temp file and check its digest. The
        object exists only once `commit()` (fsync, then rename) or `commit_together` returns;
        `abort()` drops it. A copy process stages a group while the previous one commits."""
        path, parent, parent_known = self._locate(key)
        tmp = f"{self._tmp_text}/{self._tmp_prefix}-{next(self._tmp_counter)}.part"
        hashing = HashingReader(iter_chunks(data))
        try:
            # A bare descriptor, not open(): the buffered file object adds an fstat, an
            # ioctl and an lseek to every put, and buffers nothing a chunk write needs.
            fd = self._create_temp(tmp)
            try:
                kicked = 0
                for chunk in hashing:
                    _write_all(fd, chunk)
                    if self.fsync and hashing.size - kicked >= WRITEBACK_STEP:
                        kicked = _start_writeback(fd, kicked, hashing.size)
                digest = hashing.check(key, expected_sha256)
                with contextlib.suppress(OSError):  # filesystems without xattrs still work
                    os.setxattr(fd, SHA_XATTR, _sha_xattr(digest))
                # Stat the version we wrote, not whatever a concurrent writer renames in later.
                written = os.fstat(fd)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # noqa: PTH108 - text paths on the hot path (init)
            raise
        info = self._info(key, written, digest)
        return StagedPut(self, info, fd, tmp, path, parent, parent_known)

    def commit_together(self, staged: Sequence[StagedPut]) -> list[ObjectInfo | Exception]:
        """Commit several staged puts, each answered with its info or its error.

        Where the store allows it (`syncfs`, on by default) and the kernel reports its
        errors, one syncfs(2) makes all of them durable before their renames, instead of an
        fsync per file: each fsync is a journal commit and a device flush of its own, about a
        third of a small object's copy. The cost is that the flush also writes other
        programs' dirty data on that file system. If the syncfs fails (perhaps for another
        program's file), each object is fsynced on its own, so only a failure of that
        object's own writeback fails it.
        """
        synced = False
        if self.fsync and self.syncfs and len(staged) > 1 and syncfs_module.available():
            try:
                syncfs_module.syncfs(staged[0].fd)  # opened first: it sees every later error
                synced = True
            except OSError as exc:
                log.warning("%s: syncfs failed (%s); fsyncing each object", self.url, exc)
        results: list[ObjectInfo | Exception] = []
        for one in staged:
            try:
                results.append(self._commit(one, synced=synced))
            except Exception as exc:  # that object's outcome; the others go on
                results.append(exc)
        return results

    def _commit(self, staged: StagedPut, *, synced: bool = False) -> ObjectInfo:
        key, tmp, path, parent = staged.info.key, staged.tmp, staged.path, staged.parent
        changed = [parent]  # directories whose entries this put changes, to be synced
        parent_known = staged.parent_known
        try:
            try:
                if self.fsync and not synced:
                    os.fsync(staged.fd)
            finally:
                os.close(staged.fd)
            for attempt in range(3):
                if not parent_known:
                    self._make_parents(key, Path(parent), changed)
                try:
                    os.replace(tmp, path)  # noqa: PTH105 - as above
                    break
                except FileNotFoundError:
                    # A concurrent delete tidied the empty parent away; make it again.
                    if attempt == 2:
                        raise
                    parent_known = False
                except IsADirectoryError:
                    raise StoreError(
                        f"{self.url}: cannot write {key!r}: it is a prefix of other objects"
                    ) from None
                except NotADirectoryError:
                    raise StoreError(
                        f"{self.url}: cannot write {key!r}: a parent of it is an object, "
                        "not a prefix"
                    ) from None
            if self.fsync:
                self._sync_dirs(changed)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # noqa: PTH108 - as above
            raise
        return staged.info

    def _create_temp(self, tmp: str) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            return os.open(tmp, flags, 0o666)
        except FileNotFoundError:
            self._tmp.mkdir(exist_ok=True)
            return os.open(tmp, flags, 0o666)

    def _sync_dirs(self, directories: list[str]) -> None:
        if self._unsynced is None:
            for directory in directories:
                _fsync_dir(directory)
            return
        with self._sync_lock:
            self._unsynced.update(directories)

    def _make_parents(self, key: str, parent: Path, changed: list[str]) -> None:
        """Make the parent directories of `key`, noting each directory that gains an entry."""
        try:
            _make_dirs(parent, self.root, changed)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StoreError(
                f"{self.url}: cannot write {key!r}: a parent of it is an object, not a prefix"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidKeyError(f"refused object key {key!r}: a part is too long") from exc
            raise

    def get(self, key: str) -> FileReader:
        path = self._locate(key)[0]
        try:
            # O_NOFOLLOW: a symlink planted as an object must not lead a read outside the root.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"{self.url}: no object at key {key!r}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidKeyError(
                    f"refused object key {key!r}: it is a symlink, not an object of this store"
                ) from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ObjectNotFound(f"{self.url}: no object at key {key!r} (it is a prefix)")
        return FileReader(self._info(key, st, _read_sha(fd)), fd)

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{self.url}: no object at key {key!r}") from None
        if stat.S_ISLNK(st.st_mode):
            raise InvalidKeyError(
                f"refused object key {key!r}: it is a symlink, not an object of this store"
            )
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"{self.url}: no object at key {key!r} (it is a prefix)")
        if self._unsynced is not None and self.fsync:
            # A caller may take an object found here for one already stored (a copy a killed
            # writer renamed in but never synced): the next sync() covers its rename too.
            self._sync_dirs([str(path.parent)])
        return self._info(key, st, _read_sha(str(path)))

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Start at the deepest directory the prefix names fully, so listing is bounded by it.
        base_rel = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        base = self.root / base_rel if base_rel else self.root
        if not base.is_dir() or not self._inside(base.resolve()):
            return  # a symlinked directory leads outside: nothing of this store is there
        yield from self._walk(base, base_rel, prefix, start_after)

    def _walk(
        self, directory: Path, rel: str, prefix: str, start_after: str | None
    ) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        # Directories sort as "name/" so the walk yields keys in plain lexicographic order.
        named = sorted(
            ((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in entries
        )
        for name, entry in named:
            full = rel + name
            if not rel and name.startswith(RESERVED_PREFIX):
                continue
            if not (full.startswith(prefix) or prefix.startswith(full)):
                continue
            if name.endswith("/"):
                if (
                    start_after is not None
                    and full < start_after
                    and not start_after.startswith(full)
                ):
                    continue  # every key below sorts before the watermark
                yield from self._walk(Path(entry.path), full, prefix, start_after)
            elif entry.is_file(follow_symlinks=False):
                if start_after is not None and full <= start_after:
                    continue
                if not full.startswith(prefix):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield self._info(full, st, _read_sha(entry.path))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except IsADirectoryError:
            raise StoreError(f"{self.url}: {key!r} is a prefix, not an object") from None
        # Tidy empty prefixes so listings stay cheap; a concurrent writer may refill one.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def close(self) -> None:
        return None

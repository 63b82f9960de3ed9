"""`file://` store: a directory where objects appear by atomic rename, never torn."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from edgeloop.errors import InvalidKeyError, ObjectNotFound, StoreError
from edgeloop.store.base import CHUNK_SIZE, HashingReader, ObjectInfo, PutData, iter_chunks
from edgeloop.store.keys import RESERVED_PREFIX, validate_key, validate_prefix

TMP_DIR = f"{RESERVED_PREFIX}-tmp"
SHA_XATTR = "user.edgeloop.sha256"
# A temp file this old belongs to a writer that died (puts take seconds, not an hour).
STALE_TEMP_SECONDS = 3600.0


def _read_sha(fd_or_path: int | str) -> str | None:
    try:
        return os.getxattr(fd_or_path, SHA_XATTR).decode("ascii")
    except OSError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileReader:
    """Streams one file from an open descriptor, so a concurrent replace cannot tear it."""

    def __init__(self, info: ObjectInfo, handle: object) -> None:
        self.info = info
        self._handle = handle

    def __iter__(self) -> Iterator[bytes]:
        read = self._handle.read  # type: ignore[attr-defined]
        while chunk := read(CHUNK_SIZE):
            yield chunk

    def read(self) -> bytes:
        data: bytes = self._handle.read()  # type: ignore[attr-defined]
        return data

    def close(self) -> None:
        self._handle.close()  # type: ignore[attr-defined]

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStore:
    """An ObjectStore in a directory: write to a temp file, fsync, rename, fsync the directory.

    The SHA-256 of each object is kept in the `user.edgeloop.sha256` extended attribute, set
    before the rename so the digest becomes visible together with the bytes.
    """

    def __init__(self, root: str | Path, *, fsync: bool = True, create: bool = True) -> None:
        self.root = Path(root).absolute()
        self.url = f"file://{self.root}"
        self.fsync = fsync
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
        self.sweep_temp()

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
        validate_key(key)
        path = self.root / key
        # A symlinked directory inside the root must not lead writes or reads outside it.
        if not self._inside(path.parent.resolve()):
            raise InvalidKeyError(f"refused object key {key!r}: it resolves outside the store root")
        return path

    def _inside(self, resolved: Path) -> bool:
        return resolved == self._real_root or self._real_root in resolved.parents

    @staticmethod
    def _info(key: str, st: os.stat_result, sha: str | None) -> ObjectInfo:
        modified = datetime.fromtimestamp(st.st_mtime, UTC)
        return ObjectInfo(key=key, size=st.st_size, modified=modified, sha256=sha, etag=sha)

    # -- interface -----------------------------------------------------------------------
    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        path = self._path(key)
        self._tmp.mkdir(exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        hashing = HashingReader(iter_chunks(data))
        try:
            with open(tmp, "xb") as out:
                for chunk in hashing:
                    out.write(chunk)
                out.flush()
                digest = hashing.check(key, expected_sha256)
                with contextlib.suppress(OSError):  # filesystems without xattrs still work
                    os.setxattr(out.fileno(), SHA_XATTR, digest.encode("ascii"))
                if self.fsync:
                    os.fsync(out.fileno())
                # Stat the version we wrote, not whatever a concurrent writer renames in later.
                written = os.fstat(out.fileno())
            for attempt in range(3):
                self._make_parents(key, path)
                try:
                    tmp.replace(path)
                    break
                except FileNotFoundError:
                    # A concurrent delete tidied the empty parent away; make it again.
                    if attempt == 2:
                        raise
            if self.fsync:
                _fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return self._info(key, written, digest)

    def _make_parents(self, key: str, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StoreError(
                f"{self.url}: cannot write {key!r}: a parent of it is an object, not a prefix"
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidKeyError(f"refused object key {key!r}: a part is too long") from exc
            raise
        if path.is_dir():
            raise StoreError(f"{self.url}: cannot write {key!r}: it is a prefix of other objects")

    def get(self, key: str) -> FileReader:
        path = self._path(key)
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
        handle = os.fdopen(fd, "rb")
        return FileReader(self._info(key, st, _read_sha(handle.fileno())), handle)

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

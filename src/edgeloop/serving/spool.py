"""An append-only spool of record lines on local disk, in segments that are sealed then uploaded.

A record counts as acknowledged once `sync()` has fsynced it. A segment is written as
`<id>.open`, renamed to `<id>.seg` when sealed, and deleted only after its batches are in the
store; the segment id becomes the batch id, so re-uploading after a crash writes the same
key with the same bytes.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO

OPEN_SUFFIX = ".open"
SEALED_SUFFIX = ".seg"
MAX_SLOTS = 64


class Spool:
    """One process's spool directory (a slot under the spool root, held with a file lock)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.dir, self._lock = _claim_slot(root)
        self.run_id = f"{int(time.time()):010d}-{secrets.token_hex(4)}"
        self._seq = 0
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self.open_records = 0
        self.opened_at = 0.0
        self.recover()

    def recover(self) -> list[Path]:
        """Seal segments a crashed run left open, cutting a torn last line; return sealed ones."""
        for path in sorted(self.dir.glob(f"*{OPEN_SUFFIX}")):
            _cut_torn_tail(path)
            path.rename(path.with_suffix(SEALED_SUFFIX))
        _fsync_dir(self.dir)
        return self.sealed()

    def sealed(self) -> list[Path]:
        """Sealed segments, oldest first."""
        return sealed_segments(self.dir)

    def size_bytes(self) -> int:
        return slot_usage(self.dir)[0]

    def append(self, lines: list[bytes]) -> None:
        """Write complete lines to the open segment (not yet durable: call `sync`)."""
        if self._file is None:
            self._seq += 1
            self._path = self.dir / f"{self.run_id}-{self._seq:08d}{OPEN_SUFFIX}"
            self._file = open(self._path, "ab")  # noqa: SIM115 - held open across appends
            self.opened_at = time.monotonic()
            self.open_records = 0
        self._file.write(b"".join(lines))
        self.open_records += len(lines)

    def sync(self) -> None:
        """Make every appended line durable."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def seal(self) -> Path | None:
        """Close the open segment and mark it ready for upload."""
        if self._file is None or self._path is None:
            return None
        self.sync()
        self._file.close()
        sealed = self._path.with_suffix(SEALED_SUFFIX)
        self._path.rename(sealed)
        _fsync_dir(self.dir)
        self._file, self._path = None, None
        self.open_records = 0
        return sealed

    def drop_oldest(self) -> int:
        """Delete the oldest sealed segment to make room; return the lines it held."""
        sealed = self.sealed()
        if not sealed:
            return 0
        lines = sum(1 for _ in read_lines(sealed[0]))
        sealed[0].unlink()
        return lines

    def close(self) -> None:
        self.seal()
        self._lock.close()


def sealed_segments(directory: Path) -> list[Path]:
    """The sealed segments of a spool slot directory, oldest first."""
    return sorted(directory.glob(f"*{SEALED_SUFFIX}"))


def slot_usage(directory: Path) -> tuple[int, list[Path]]:
    """The bytes a spool slot's files hold and its sealed segments, oldest first, from one
    listing (files may go meanwhile: the writer drops segments, the uploader deletes them)."""
    total, sealed = 0, []
    with suppress(FileNotFoundError):
        for path in directory.iterdir():
            with suppress(FileNotFoundError):
                total += path.stat().st_size
                if path.suffix == SEALED_SUFFIX:
                    sealed.append(path)
    return total, sorted(sealed)


def read_lines(path: Path) -> Iterator[bytes]:
    """The complete lines of a segment."""
    with open(path, "rb") as handle:
        for line in handle:
            if line.endswith(b"\n"):
                yield line


def _claim_slot(root: Path) -> tuple[Path, IO[bytes]]:
    for index in range(MAX_SLOTS):
        lock = open(root / f"w{index}.lock", "ab")  # noqa: SIM115 - the lock lives with us
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        slot = root / f"w{index}"
        slot.mkdir(exist_ok=True)
        return slot, lock
    raise OSError(f"{root}: all {MAX_SLOTS} spool slots are held by running processes")


def _cut_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
            os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

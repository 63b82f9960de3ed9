"""One flush for many files: syncfs(2) of the file system that holds them.

The standard library has `os.fsync` and `os.sync` but no `syncfs`, and no maintained
package wraps it, so it is called through ctypes (a foreign call releases the GIL like
`os.fsync`). Used only where it reports errors: Linux 5.8 and later (before that syncfs
returned 0 even when writeback failed, so a lost write could pass as durable).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import sys
from collections.abc import Callable

# Linux gained syncfs error reporting (per-file-system errseq) in 5.8.
MIN_KERNEL = (5, 8)


def _kernel_version(release: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else None


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    if sys.platform != "linux":
        return None
    version = _kernel_version(os.uname().release)
    if version is None or version < MIN_KERNEL:
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # a libc without syncfs (very old glibc, some musl)
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def available() -> bool:
    """Whether `syncfs` works here and reports writeback errors."""
    return _syncfs() is not None


def syncfs(fd: int) -> None:
    """Make everything written to the file system holding `fd` durable: data and metadata
    of every file on it, other programs' included. Raises OSError on failure, including a
    writeback error anywhere on that file system since `fd` was opened."""
    function = _syncfs()
    if function is None:
        raise OSError(errno.ENOSYS, "syncfs is not available here (Linux 5.8 or later)")
    if function(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))

"""Which process holds a pending registration, and whether that process is still alive.

An owner is `host:pid:start`, where `start` is the process's start time in clock ticks since
boot (Linux `/proc/<pid>/stat`), so a recycled pid is not mistaken for the dead owner.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    """The start time of process `pid` (field 22 of /proc/<pid>/stat), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def current_owner() -> str:
    """This process as an owner string."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '-'}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when `owner` is a process on this host that has certainly exited; an owner on
    another host, or one that cannot be checked, counts as alive (age decides for those)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if start and start != "-":
        now = _start_ticks(pid)
        if now is not None or Path("/proc/self").is_dir():
            return now != start  # gone, or the pid now belongs to a younger process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False

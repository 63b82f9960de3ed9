"""How busy the CPUs a process may run on are, from the kernel's counters (Linux /proc/stat).

The capture uploader asks before each pass: while the serving CPUs are busy with requests,
uploads wait (the spool holds the records durably meanwhile).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# Fields of a /proc/stat cpu line that are not work: idle and iowait.
_IDLE_FIELDS = (3, 4)
# Seconds of CPU time (per CPU) a busy share is measured over at least.
MIN_INTERVAL = 0.2


def cpu_ticks(stat_text: str, cpus: Iterable[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of the given CPUs since boot, from /proc/stat's text;
    CPUs the text does not list are left out."""
    wanted = {f"cpu{number}" for number in cpus}
    busy = total = 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if name not in wanted:
            continue
        ticks = [int(value) for value in rest.split()[:8]]  # user .. steal; guests are in user
        idle = sum(ticks[i] for i in _IDLE_FIELDS if i < len(ticks))
        busy += sum(ticks) - idle
        total += sum(ticks)
    return busy, total


class CpuLoad:
    """The busy fraction of this process's CPUs between calls, this process's own work left
    out (so an uploader does not take its own uploading for load); None where unknown."""

    def __init__(self, stat_path: Path = PROC_STAT) -> None:
        self._path = stat_path
        self._cpus = sorted(os.sched_getaffinity(0))
        self._ticks_per_second = os.sysconf("SC_CLK_TCK")
        self._last = self._sample()
        self._answer: float | None = None

    def _sample(self) -> tuple[int, int, float] | None:
        try:
            busy, total = cpu_ticks(self._path.read_text(), self._cpus)
        except (OSError, ValueError):
            return None
        own = os.times()
        return busy, total, (own.user + own.system) * self._ticks_per_second

    def busy_fraction(self) -> float | None:
        """Busy share of the CPUs since the last answer (0.0-1.0), not counting this process;
        asked again within MIN_INTERVAL, the last answer (a few clock ticks say little)."""
        now, last = self._sample(), self._last
        if now is None or last is None:
            self._last = now
            return None
        elapsed = now[1] - last[1]
        if elapsed < MIN_INTERVAL * self._ticks_per_second * len(self._cpus):
            return self._answer
        self._last = now
        busy = (now[0] - last[0]) - (now[2] - last[2])
        self._answer = min(1.0, max(0.0, busy / elapsed))
        return self._answer

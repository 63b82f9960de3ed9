"""Background threads of the server run at the lowest CPU priority (Linux sets nice per thread).

On a server pinned to one core, work that can wait (building a new model version, writing
capture batches as Parquet) otherwise takes a share of the core from the requests being
served. The event loop thread keeps the default priority.
"""

from __future__ import annotations

import contextlib
import os
import threading

BACKGROUND_NICE = 19


def lower_priority(nice: int = BACKGROUND_NICE) -> None:
    """Give the calling thread the nice value `nice` (a no-op where that is not possible)."""
    with contextlib.suppress(OSError, AttributeError):  # an optimisation only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

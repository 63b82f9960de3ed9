"""Bandwidth limits: parse rclone-style rates ("10M") and share them with a token bucket."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from edgeloop.errors import ReplicationError

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([BKMGT]?)(?:i?B)?(?:/s)?\s*$", re.IGNORECASE)


def parse_rate(text: str | None) -> float | None:
    """Bytes per second from '10M', '512K', '1.5G', '1000' (binary units, like rclone);
    None, '', '0' and 'off' mean unlimited."""
    if text is None or text.strip().lower() in ("", "0", "off"):
        return None
    match = _RATE.match(text)
    if not match:
        raise ReplicationError(
            f"bad bandwidth limit {text!r}: use a number of bytes/s with an optional "
            "K, M or G suffix, e.g. 10M"
        )
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    return value if value > 0 else None


class TokenBucket:
    """A thread-safe token bucket of `rate` bytes/s; `take(n)` blocks until n bytes may pass."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # One second of burst by default: smooth enough, and chunks of 1 MiB still pass.
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, amount: int) -> None:
        """Wait until `amount` bytes are allowed; amounts above the burst go into debt."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)

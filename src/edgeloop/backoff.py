"""Exponential backoff with full jitter, as a pure function of the attempt number."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays grow as `base * factor**attempt`, capped at `cap`, each drawn uniformly in
    [`floor` share, 1] of that bound so retrying clients spread out instead of stampeding."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 60.0
    floor: float = 0.5

    def bound(self, attempt: int) -> float:
        """The largest delay after `attempt` failures (attempt 0 is the first retry)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # Compare exponents instead of computing a huge power for large attempt counts.
        if attempt > 64:
            return self.cap
        return float(min(self.cap, self.base * self.factor**attempt))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A jittered delay for the retry after `attempt` failures."""
        bound = self.bound(attempt)
        draw = (rng or random).random()
        return bound * (self.floor + (1.0 - self.floor) * draw)

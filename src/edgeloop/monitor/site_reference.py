"""Which of a site's training rows describe the site as a new version found it.

A version retrained because one site's data changed holds both regimes of that site; from
then on the site's windows look like the newest rows only, and a reference of all its rows
would report drift at every window. Walking back from the newest rows in doubling steps, and
in halving ones over a stretch the drift test tells apart, finds the newest stretch of rows
that look alike. Pure: arrays in, a row count out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from edgeloop.monitor.drift import DriftSettings, evaluate_drift
from edgeloop.monitor.profile import build_profile

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def alike_tail(
    columns: Mapping[str, NDArray[np.float64]], *, block: int, settings: DriftSettings
) -> int:
    """How many of the newest rows (`columns` ordered oldest first) look alike.

    Starts from the newest `block` rows (all, when fewer) and takes the next older rows, as
    many as taken so far, while the univariate drift tests under `settings` do not tell them
    apart; an older stretch that they do is halved, down to `block` rows, so the count stops
    within about `block` rows of a change.
    """
    # The multivariate test costs eight times the others here and runs once per step; a
    # change it alone would see is left to the drift job's own checks.
    settings = replace(settings, multivariate=False)
    rows = len(next(iter(columns.values()))) if columns else 0
    block = max(block, 1)
    taken = min(block, rows)
    size = taken
    while taken < rows:
        size = min(size, rows - taken)
        cut = rows - taken
        newest = {name: values[cut:] for name, values in columns.items()}
        older = {name: values[cut - size : cut] for name, values in columns.items()}
        verdict = evaluate_drift(
            build_profile("site-reference", "probe", newest),
            older,
            site="site-reference",
            window_start=_EPOCH,
            window_end=_EPOCH,
            settings=settings,
        )
        if verdict.status != "drift":
            taken += size
            size = taken
        elif size > block:
            size = max(size // 2, block)
        else:
            break
    return taken

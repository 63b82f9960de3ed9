"""The agent's runbooks as pure rules: judge a swap on probation, measure error rate and p99
from counter deltas, and decide which alerts to raise or clear. No I/O here."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from edgeloop.fleet.agent.state import Probation


@dataclass(frozen=True)
class HealthBounds:
    """When a swap is rolled back and when an alert is raised."""

    probation_seconds: float = 30.0
    """How long a new version is watched after its swap."""
    max_error_rate: float = 0.05
    """Share of failed requests (5xx, or 400 for input the new version cannot take)."""
    min_requests: int = 20
    """Requests needed before the error rate is judged (fewer: not enough evidence)."""
    spool_alert: float = 0.8
    """Capture spool fullness (0-1) that raises an alert."""
    backlog_alert: float = 0.8
    """Replication backlog, as a share of its bound, that raises an alert."""


class Verdict(StrEnum):
    WAIT = "wait"
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    ROLLBACK = "rollback"


def judge_probation(
    probation: Probation,
    *,
    now: float,
    ready: bool,
    requests: float,
    errors: float,
    bounds: HealthBounds,
) -> tuple[Verdict, str]:
    """Whether a swapped-in version stays, goes back, or is still being watched (and why)."""
    if not ready:
        return Verdict.ROLLBACK, "server not ready after the swap"
    seen = requests - probation.baseline_requests
    failed = errors - probation.baseline_errors
    if seen >= bounds.min_requests and seen > 0:
        rate = failed / seen
        if rate > bounds.max_error_rate:
            return (
                Verdict.ROLLBACK,
                f"error rate {rate:.3f} > {bounds.max_error_rate} over {int(seen)} requests "
                "after the swap",
            )
    if now - probation.since >= bounds.probation_seconds:
        return Verdict.PASS, f"healthy for {bounds.probation_seconds:g}s after the swap"
    return Verdict.WAIT, ""


def rate(errors: float, requests: float) -> float:
    """Errors per request, 0 with no requests, clamped to [0, 1]."""
    if requests <= 0:
        return 0.0
    return min(1.0, max(0.0, errors / requests))


def quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The `q` quantile of a histogram from (upper bound, cumulative count) pairs, by linear
    interpolation inside the bucket (as Prometheus' histogram_quantile); None when empty."""
    points = sorted(buckets)
    if not points or points[-1][1] <= 0:
        return None
    target = q * points[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in points:
        if count >= target:
            if math.isinf(upper):
                return lower
            share = (target - below) / (count - below) if count > below else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, count
    return lower


@dataclass(frozen=True)
class Alert:
    name: str
    raised: bool
    message: str


def alerts(
    levels: Mapping[str, float | None], bounds: HealthBounds, raised: Mapping[str, bool]
) -> list[Alert]:
    """Alerts to raise (a level reached its bound) or clear (back below), once per crossing.

    `levels` holds `spool` and `backlog` fullness (0-1, None when unknown).
    """
    limits = {"spool": bounds.spool_alert, "backlog": bounds.backlog_alert}
    out = []
    for name, level in sorted(levels.items()):
        if level is None or name not in limits:
            continue
        high = level >= limits[name]
        if high != bool(raised.get(name)):
            what = "capture spool" if name == "spool" else "replication backlog"
            message = (
                f"{what} is {level:.0%} full (alert at {limits[name]:.0%})"
                if high
                else f"{what} back to {level:.0%}"
            )
            out.append(Alert(name, high, message))
    return out

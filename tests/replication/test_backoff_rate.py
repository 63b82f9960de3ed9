"""Backoff bounds and jitter; bandwidth parsing and the token bucket (fake clock)."""

from __future__ import annotations

import random

import pytest

from edgeloop.backoff import Backoff
from edgeloop.errors import ReplicationError
from edgeloop.replication.rate import TokenBucket, parse_rate


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    b = Backoff(base=0.5, factor=2.0, cap=10.0)
    assert [b.bound(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert b.bound(10_000) == 10.0


def test_backoff_jitter_stays_within_bounds_and_spreads() -> None:
    b = Backoff(base=1.0, factor=2.0, cap=60.0, floor=0.5)
    rng = random.Random(7)
    delays = [b.delay(3, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100  # jittered, not one fixed value


def test_backoff_refuses_negative_attempts() -> None:
    with pytest.raises(ValueError):
        Backoff().bound(-1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10M", 10 * 1024**2),
        ("512k", 512 * 1024),
        ("1.5G", 1.5 * 1024**3),
        ("1000", 1000.0),
        ("2MiB/s", 2 * 1024**2),
        ("off", None),
        ("0", None),
        (None, None),
    ],
)
def test_parse_rate(text: str | None, expected: float | None) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["fast", "10X", "-5M", "M"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ReplicationError, match="bandwidth limit"):
        parse_rate(text)


def test_token_bucket_delays_to_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(1000.0, burst=1000.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        bucket.take(500)
    # 5000 bytes at 1000 B/s with a 1000-byte burst: 4 s of waiting in total.
    assert sum(slept) == pytest.approx(4.0)

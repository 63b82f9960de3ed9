"""Time windows: parse durations like `1h`, and align windows so each has one stable identity."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from edgeloop.errors import MonitoringError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """`90s`, `15m`, `1h`, `7d`, `2w` as a timedelta; raises MonitoringError otherwise."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) < 0 or (float(match.group(1)) == 0 and not allow_zero):
        sign = "a non-negative" if allow_zero else "a positive"
        raise MonitoringError(
            f"bad duration {text!r}: use {sign} number and a unit s, m, h, d or w (e.g. 1h)"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive time is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def floor_time(moment: datetime, length: timedelta) -> datetime:
    """The start of the `length`-long window (counted from the Unix epoch) holding `moment`."""
    moment = as_utc(moment)
    step = int(length.total_seconds() * 1_000_000)
    since = (moment - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=since - since % step)


def last_complete_window(now: datetime, length: timedelta) -> tuple[datetime, datetime]:
    """The latest aligned window that has fully ended by `now`, as (start, end)."""
    end = floor_time(now, length)
    return end - length, end


def days_between(start: datetime, end: datetime) -> list[datetime]:
    """Midnight (UTC) of each day that [start, end) touches, oldest first."""
    day = floor_time(start, timedelta(days=1))
    last = as_utc(end) - timedelta(microseconds=1)
    days = []
    while day <= last:
        days.append(day)
        day += timedelta(days=1)
    return days

"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC, pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from edgeloop.errors import ConfigError

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(x) for x in base.split("-", 1))
        else:
            start = end = int(base)
        if step < 1 or start < low or end > high or start > end:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return frozenset(values)


class Cron:
    """A parsed cron expression; `matches` and `slots_between` answer when it fires."""

    def __init__(self, expr: str) -> None:
        parts = expr.split()
        if len(parts) != 5:
            raise ConfigError(f"cron {expr!r} needs five fields: minute hour day month weekday")
        try:
            self.fields = [_field(p, lo, hi) for p, (lo, hi) in zip(parts, _RANGES, strict=True)]
        except ValueError as exc:
            raise ConfigError(
                f"cron {expr!r}: bad field {exc}; use *, N, N-M, */N or lists"
            ) from exc
        self.expr = expr

    def matches(self, moment: datetime) -> bool:
        """Whether the cron fires in the minute `moment` falls in (weekday 0 = Sunday)."""
        minute, hour, day, month, weekday = self.fields
        return (
            moment.minute in minute
            and moment.hour in hour
            and moment.day in day
            and moment.month in month
            and (moment.isoweekday() % 7) in weekday
        )

    def latest_slot(self, after: datetime, until: datetime) -> datetime | None:
        """The latest firing minute in (after, until], or None; missed older slots are not
        replayed (a core down for a day runs the schedule once, not once per missed slot)."""
        moment = until.replace(second=0, microsecond=0)
        floor = after.replace(second=0, microsecond=0)
        limit = 60 * 24 * 366  # scan at most a year of minutes
        while moment > floor and limit > 0:
            if self.matches(moment):
                return moment
            moment -= timedelta(minutes=1)
            limit -= 1
        return None

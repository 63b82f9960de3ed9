"""When a supervised process that exited is started again: exponential backoff, reset by a
stable run, and a limit after which the supervisor gives up on it. Pure: no clock, no I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff of restarts: `initial` seconds after the first quick failure, times `factor`
    after each further one, at most `maximum`; a run of `stable_after` seconds or more counts
    as healthy and starts the schedule again. `give_up_after` quick failures in a row (None:
    never) leave the process stopped, marked failed."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    stable_after: float = 30.0
    give_up_after: int | None = None

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial or self.factor < 1:
            raise ValueError("need 0 <= initial <= maximum and factor >= 1")
        if self.give_up_after is not None and self.give_up_after < 1:
            raise ValueError("give_up_after must be at least 1 (or None: never)")

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next start after `failures` quick failures in a row."""
        if failures <= 0:
            return 0.0
        delay = self.initial
        for _ in range(failures - 1):  # a loop, not factor**n: no overflow after many failures
            if delay >= self.maximum or self.factor == 1.0:
                break
            delay *= self.factor
        return min(self.maximum, delay)


@dataclass(frozen=True)
class RunHistory:
    """What the supervisor remembers of one process: its restarts and quick failures in a row."""

    restarts: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Decision:
    """What to do after an exit: restart after `delay` seconds, or not, and why."""

    restart: bool
    delay: float
    history: RunHistory
    reason: str


def after_exit(
    policy: RestartPolicy,
    history: RunHistory,
    *,
    ran_for: float,
    exit_code: int,
    stopping: bool,
) -> Decision:
    """Decide what follows the exit of a process that ran `ran_for` seconds.

    A supervised component is meant to run until told to stop, so any exit while the
    supervisor is not stopping is a failure, exit code 0 included.
    """
    if stopping:
        return Decision(False, 0.0, history, "stopping")
    failures = 1 if ran_for >= policy.stable_after else history.failures + 1
    if policy.give_up_after is not None and failures > policy.give_up_after:
        return Decision(
            False,
            0.0,
            RunHistory(history.restarts, failures),
            f"exited with code {exit_code}; failed {failures} times in a row, giving up",
        )
    delay = policy.delay(failures)
    return Decision(
        True,
        delay,
        RunHistory(history.restarts + 1, failures),
        f"exited with code {exit_code}; restarting in {delay:.1f}s",
    )

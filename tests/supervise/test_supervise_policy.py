"""The pure restart policy: backoff schedule, reset after a stable run, giving up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeloop.supervise.policy import RestartPolicy, RunHistory, after_exit


def test_backoff_doubles_up_to_the_maximum() -> None:
    policy = RestartPolicy(initial=0.5, factor=2.0, maximum=4.0)
    assert [policy.delay(n) for n in range(0, 7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_quick_failures_back_off_and_count_restarts() -> None:
    policy = RestartPolicy(initial=1.0, factor=3.0, maximum=100.0, stable_after=10.0)
    history = RunHistory()
    delays = []
    for _ in range(4):
        decision = after_exit(policy, history, ran_for=0.2, exit_code=1, stopping=False)
        assert decision.restart
        delays.append(decision.delay)
        history = decision.history
    assert delays == [1.0, 3.0, 9.0, 27.0]
    assert history == RunHistory(restarts=4, failures=4)


def test_a_stable_run_resets_the_backoff_but_not_the_restart_count() -> None:
    policy = RestartPolicy(initial=1.0, factor=2.0, stable_after=5.0)
    history = RunHistory(restarts=7, failures=6)
    decision = after_exit(policy, history, ran_for=60.0, exit_code=137, stopping=False)
    assert decision.restart and decision.delay == 1.0
    assert decision.history == RunHistory(restarts=8, failures=1)
    assert "137" in decision.reason


def test_exit_code_zero_is_still_restarted() -> None:
    decision = after_exit(RestartPolicy(), RunHistory(), ran_for=1.0, exit_code=0, stopping=False)
    assert decision.restart


def test_nothing_restarts_while_stopping() -> None:
    decision = after_exit(RestartPolicy(), RunHistory(), ran_for=1.0, exit_code=1, stopping=True)
    assert not decision.restart and decision.reason == "stopping"


def test_gives_up_after_the_limit_of_quick_failures() -> None:
    policy = RestartPolicy(give_up_after=2, stable_after=10.0)
    history = RunHistory()
    outcomes = []
    for _ in range(3):
        decision = after_exit(policy, history, ran_for=0.1, exit_code=2, stopping=False)
        outcomes.append(decision.restart)
        history = decision.history
    assert outcomes == [True, True, False]
    assert "giving up" in decision.reason


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"initial": 5.0, "maximum": 1.0}, {"factor": 0.5}, {"give_up_after": 0}],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


@given(
    initial=st.floats(0.0, 10.0),
    extra=st.floats(0.0, 100.0),
    factor=st.floats(1.0, 5.0),
    failures=st.integers(0, 100_000),
)
def test_delay_is_monotonic_and_bounded(
    initial: float, extra: float, factor: float, failures: int
) -> None:
    policy = RestartPolicy(initial=initial, factor=factor, maximum=initial + extra)
    assert 0.0 <= policy.delay(failures) <= policy.maximum
    assert policy.delay(failures) <= policy.delay(failures + 1)

"""Pure fleet rules: selectors, wave planning, gates, rollout transitions, desired state,
reconcile and the RBAC policy table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeloop.model.desired import (
    ActionKind,
    Deployment,
    DesiredModel,
    RolloutView,
    desired_models,
    is_older,
    reconcile,
)
from edgeloop.model.rbac import POLICY, Role, allows, policy_for
from edgeloop.model.rollout import (
    Gate,
    GateOutcome,
    RolloutState,
    Selector,
    SiteHealth,
    WaveSpec,
    evaluate_gate,
    plan_waves,
    transition,
)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("region=eu", {"region": "eu"}, True),
        ("region=eu", {"region": "us"}, False),
        ("region==eu,hw!=gpu", {"region": "eu", "hw": "cpu"}, True),
        ("region=eu,hw!=gpu", {"region": "eu", "hw": "gpu"}, False),
        ("hw!=gpu", {}, True),
        ("ring in (canary, early)", {"ring": "early"}, True),
        ("ring in (canary,early),region=eu", {"ring": "late", "region": "eu"}, False),
    ],
)
def test_selector_matches(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert Selector.parse(selector).matches(labels) is expected


@pytest.mark.parametrize("bad", ["region", "=eu", "ring in canary", "a b=c"])
def test_bad_selectors_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="selector term"):
        Selector.parse(bad)


@given(
    n=st.integers(min_value=1, max_value=500),
    percents=st.lists(st.floats(min_value=0.1, max_value=99.9), max_size=4),
)
def test_waves_cover_every_site_exactly_once(n: int, percents: list[float]) -> None:
    spec = WaveSpec(percents=(*sorted(percents), 100.0))
    sites = {f"s{i}": {} for i in range(n)}
    waves = plan_waves(sites, spec, rollout_id="r1")
    flat = [s for w in waves for s in w]
    assert sorted(flat) == sorted(sites)
    assert all(waves), "no empty wave"
    assert len(waves) <= len(spec.percents)


def test_percent_waves_are_cumulative_and_stable() -> None:
    sites = {f"s{i:03d}": {} for i in range(100)}
    waves = plan_waves(sites, WaveSpec.parse("5%,25%,100%"), rollout_id="r1")
    assert [len(w) for w in waves] == [5, 20, 75]
    assert waves == plan_waves(sites, WaveSpec.parse("5,25,100"), rollout_id="r1")
    other = plan_waves(sites, WaveSpec.parse("5,25,100"), rollout_id="r2")
    assert other[0] != waves[0], "another rollout picks other canaries"


def test_label_waves_follow_the_given_order() -> None:
    sites = {"a": {"ring": "late"}, "b": {"ring": "canary"}, "c": {"ring": "early"}, "d": {}}
    waves = plan_waves(sites, WaveSpec.parse("label:ring=canary,early"), rollout_id="r")
    assert waves == [["b"], ["c"], ["a", "d"]]


@pytest.mark.parametrize("bad", ["5,25", "25,5,100", "0,100", "x", "150"])
def test_bad_wave_specs_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        WaveSpec.parse(bad)


def health(site: str, version: str | None = "2", **kw: object) -> SiteHealth:
    defaults: dict[str, object] = {"healthy": True, "healthy_since": 100.0}
    defaults.update(kw)
    return SiteHealth(site, version, **defaults)  # type: ignore[arg-type]


GATE = Gate(
    min_healthy_seconds=60,
    max_error_rate=0.01,
    max_p99_ms=50,
    min_quality=0.8,
    wave_timeout_seconds=600,
)


def test_gate_waits_for_the_hold_then_passes() -> None:
    wave = [health("a"), health("b", healthy_since=130.0)]
    assert evaluate_gate(wave, "2", GATE, wave_started=90, now=150).outcome == GateOutcome.WAIT
    assert evaluate_gate(wave, "2", GATE, wave_started=90, now=191).outcome == GateOutcome.PASS


def test_gate_waits_for_sites_not_yet_swapped_until_the_timeout() -> None:
    wave = [health("a"), health("b", version="1")]
    assert evaluate_gate(wave, "2", GATE, wave_started=0, now=500).outcome == GateOutcome.WAIT
    late = evaluate_gate(wave, "2", GATE, wave_started=0, now=601)
    assert late.outcome == GateOutcome.FAIL
    assert late.failed_sites == ("b",)


@pytest.mark.parametrize(
    ("site", "reason"),
    [
        (health("a", healthy=False, healthy_since=None), "unhealthy"),
        (health("a", error_rate=0.2), "error rate"),
        (health("a", p99_ms=80.0), "p99"),
        (health("a", quality=0.5), "live quality"),
        (health("a", version="1", apply_failed="bad signature"), "apply failed"),
    ],
)
def test_gate_fails_on_any_bad_site(site: SiteHealth, reason: str) -> None:
    decision = evaluate_gate([site, health("b")], "2", GATE, wave_started=0, now=1000)
    assert decision.outcome == GateOutcome.FAIL
    assert reason in decision.reason
    assert decision.failed_sites == ("a",)


def test_rollout_transitions() -> None:
    assert transition(RolloutState.RUNNING, "pause") == RolloutState.PAUSED
    assert transition(RolloutState.PAUSED, "resume") == RolloutState.RUNNING
    assert transition(RolloutState.COMPLETED, "rollback") == RolloutState.ROLLED_BACK
    for state, action in [
        (RolloutState.COMPLETED, "abort"),
        (RolloutState.ROLLED_BACK, "rollback"),
        (RolloutState.RUNNING, "resume"),
    ]:
        with pytest.raises(ValueError, match=f"cannot {action}"):
            transition(state, action)


def test_desired_state_follows_rollout_progress() -> None:
    deps = [Deployment("vision", "detector", "1", "tier=store")]
    rollout = RolloutView("r", "vision", "1", "2", RolloutState.RUNNING, (("a",), ("b",)), 0)
    labels = {"tier": "store"}
    assert desired_models("a", labels, deps, {"vision": rollout})[0].version == "2"
    assert desired_models("b", labels, deps, {"vision": rollout})[0].version == "1"
    assert desired_models("c", {"tier": "lab"}, deps, {"vision": rollout}) == []
    back = RolloutView("r", "vision", "1", "2", RolloutState.ROLLED_BACK, (("a",), ("b",)), 0)
    model = desired_models("a", labels, deps, {"vision": back})[0]
    assert (model.version, model.rollback) == ("1", True)
    assert desired_models("b", labels, deps, {"vision": back})[0].rollback is False


@pytest.mark.parametrize("state", [RolloutState.RUNNING, RolloutState.COMPLETED])
def test_a_rollout_to_an_older_version_is_marked_as_a_deliberate_downgrade(
    state: RolloutState,
) -> None:
    # An alias moved back (champion 3 -> 2): sites the rollout reached may install the older
    # version, also after it completed (an agent that was offline meanwhile).
    running = state == RolloutState.RUNNING
    version, wave = ("3", 0) if running else ("2", 1)
    deps = [Deployment("vision", "detector", version, "")]
    down = RolloutView("r", "vision", "3", "2", state, (("a",), ("b",)), wave)
    reached = desired_models("a", {}, deps, {"vision": down})[0]
    assert (reached.version, reached.rollback) == ("2", True)
    assert reconcile([reached], {"detector": "3"})[0].kind == ActionKind.ROLLBACK
    other = desired_models("b", {}, deps, {"vision": down})[0]
    assert (other.version, other.rollback) == (version, not running)
    up = RolloutView("r", "vision", "2", "3", state, (("a",), ("b",)), wave)
    assert desired_models("a", {}, deps, {"vision": up})[0].rollback is False


def test_reconcile_refuses_a_downgrade_unless_it_is_a_rollback() -> None:
    installed = {"detector": "10", "old": "1"}
    plain = reconcile([DesiredModel("detector", "9", "vision")], installed)
    assert [(a.kind, a.model) for a in plain] == [
        (ActionKind.REFUSE, "detector"),
        (ActionKind.UNLOAD, "old"),
    ]
    back = reconcile([DesiredModel("detector", "9", "vision", rollback=True)], {"detector": "10"})
    assert back[0].kind == ActionKind.ROLLBACK
    up = reconcile([DesiredModel("detector", "11", "vision")], {"detector": "10"})
    assert up[0].kind == ActionKind.LOAD
    assert reconcile([DesiredModel("detector", "10", "vision")], {"detector": "10"}) == []


def test_versions_compare_numerically() -> None:
    assert is_older("9", "10")
    assert is_older("1.2.9", "1.10.0")
    assert not is_older("2", "2")


def test_policy_table_shape() -> None:
    keys = [p.key for p in POLICY]
    assert len(keys) == len(set(keys)), "one policy per route"
    heartbeat = policy_for("post", "/api/v1/sites/{site}/heartbeat")
    assert heartbeat is not None
    assert allows(heartbeat, Role.AGENT, token_site="a", site="a")
    assert not allows(heartbeat, Role.AGENT, token_site="a", site="b")
    assert not allows(heartbeat, Role.ADMIN, token_site=None, site="a")
    for policy in POLICY:
        if policy.path.endswith("/tokens") or policy.path.endswith("/audit"):
            assert policy.roles == {Role.ADMIN}

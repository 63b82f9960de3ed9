"""Pure rollout rules: label selectors, wave planning, gates between waves, halt decisions."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

_SELECTOR_TERM = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._/-]*)\s*(==|=|!=|\s+in\s+)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector like `region=eu,hw!=gpu,ring in (canary,early)`; empty matches all."""

    equals: tuple[tuple[str, str], ...] = ()
    not_equals: tuple[tuple[str, str], ...] = ()
    within: tuple[tuple[str, frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse the comma-separated selector syntax; raises ValueError on a bad term."""
        equals: list[tuple[str, str]] = []
        not_equals: list[tuple[str, str]] = []
        within: list[tuple[str, frozenset[str]]] = []
        for term in _split_terms(text):
            match = _SELECTOR_TERM.match(term)
            if not match:
                raise ValueError(
                    f"bad selector term {term!r}; use key=value, key!=value or key in (a,b)"
                )
            key, op, value = match.group(1), match.group(2).strip(), match.group(3)
            if op == "in":
                if not (value.startswith("(") and value.endswith(")")):
                    raise ValueError(f"bad selector term {term!r}: write `{key} in (a,b)`")
                values = frozenset(v.strip() for v in value[1:-1].split(",") if v.strip())
                within.append((key, values))
            elif op == "!=":
                not_equals.append((key, value))
            else:
                equals.append((key, value))
        return cls(tuple(equals), tuple(not_equals), tuple(within))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a site with these labels is selected."""
        return (
            all(labels.get(k) == v for k, v in self.equals)
            and all(labels.get(k) != v for k, v in self.not_equals)
            and all(labels.get(k) in vs for k, vs in self.within)
        )

    def __str__(self) -> str:
        terms = [f"{k}={v}" for k, v in self.equals]
        terms += [f"{k}!={v}" for k, v in self.not_equals]
        terms += [f"{k} in ({','.join(sorted(vs))})" for k, vs in self.within]
        return ",".join(terms)


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t for t in terms if t.strip()]


@dataclass(frozen=True, slots=True)
class WaveSpec:
    """How to cut the selected sites into waves: cumulative percentages, or by a label's values.

    `percents=(5, 25, 100)` puts 5% of sites in wave 1, up to 25% by wave 2, the rest in wave 3.
    `by_label="ring", order=("canary", "early")` makes one wave per listed value, in that order,
    then one last wave of every site whose value is not listed.
    """

    percents: tuple[float, ...] = (5.0, 25.0, 100.0)
    by_label: str | None = None
    order: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.by_label is None:
            if not self.percents or any(not 0 < p <= 100 for p in self.percents):
                raise ValueError("wave percentages must be in (0, 100]")
            if list(self.percents) != sorted(self.percents) or self.percents[-1] != 100:
                raise ValueError("wave percentages must increase and end at 100, e.g. 5,25,100")

    @classmethod
    def parse(cls, text: str) -> WaveSpec:
        """`5,25,100` or `5%,25%,100%` (percentages) or `label:ring=canary,early` (by label)."""
        text = text.strip()
        if text.startswith("label:"):
            label, _, order = text.removeprefix("label:").partition("=")
            return cls(
                by_label=label.strip(), order=tuple(v.strip() for v in order.split(",") if v)
            )
        try:
            return cls(percents=tuple(float(p.strip().rstrip("%")) for p in text.split(",")))
        except ValueError as exc:
            raise ValueError(f"bad waves {text!r}: {exc}") from None


def _spread(rollout_id: str, site: str) -> str:
    # A stable pseudo-random order: the same rollout always picks the same canaries, and
    # different rollouts pick different ones, so no site is always first.
    return hashlib.sha256(f"{rollout_id}\0{site}".encode()).hexdigest()


def plan_waves(
    sites: Mapping[str, Mapping[str, str]], spec: WaveSpec, *, rollout_id: str
) -> list[list[str]]:
    """Cut the selected `sites` (name -> labels) into non-empty waves, each site in exactly one."""
    names = sorted(sites, key=lambda s: _spread(rollout_id, s))
    if not names:
        return []
    if spec.by_label is not None:
        label = spec.by_label
        waves = [sorted(n for n in names if sites[n].get(label) == value) for value in spec.order]
        rest = sorted(n for n in names if sites[n].get(label) not in spec.order)
        return [w for w in [*waves, rest] if w]
    waves, taken = [], 0
    for percent in spec.percents:
        upto = max(taken + 1, math.ceil(len(names) * percent / 100))
        upto = min(upto, len(names))
        if upto > taken:
            waves.append(names[taken:upto])
            taken = upto
    return waves


@dataclass(frozen=True, slots=True)
class Gate:
    """What a wave must show before the next starts, and what halts the rollout."""

    min_healthy_seconds: float = 60.0
    max_error_rate: float = 0.01
    max_p99_ms: float | None = None
    min_quality: float | None = None
    wave_timeout_seconds: float = 900.0


@dataclass(frozen=True, slots=True)
class SiteHealth:
    """What the control plane knows of one site in the current wave, from its heartbeats."""

    site: str
    loaded_version: str | None
    healthy: bool
    error_rate: float = 0.0
    p99_ms: float | None = None
    quality: float | None = None
    apply_failed: str | None = None
    healthy_since: float | None = None
    """Seconds since the epoch at which the site was first seen healthy on the new version."""


class GateOutcome(StrEnum):
    WAIT = "wait"
    PASS = "pass"  # noqa: S105 (a gate verdict, not a password)
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's verdict on one wave, with the sites that caused a failure and why."""

    outcome: GateOutcome
    reason: str = ""
    failed_sites: tuple[str, ...] = field(default=())


def site_problem(health: SiteHealth, version: str, gate: Gate) -> str | None:
    """Why a site on the new version breaks the gate, or None while it does not."""
    if health.apply_failed:
        return f"apply failed: {health.apply_failed}"
    if health.loaded_version != version:
        return None  # not swapped yet: the wave timeout, not the site, decides
    if not health.healthy:
        return "unhealthy after the swap"
    if health.error_rate > gate.max_error_rate:
        return f"error rate {health.error_rate:.4f} > {gate.max_error_rate}"
    if (
        gate.max_p99_ms is not None
        and health.p99_ms is not None
        and health.p99_ms > gate.max_p99_ms
    ):
        return f"p99 {health.p99_ms:.1f} ms > {gate.max_p99_ms} ms"
    if (
        gate.min_quality is not None
        and health.quality is not None
        and health.quality < gate.min_quality
    ):
        return f"live quality {health.quality:.4f} < {gate.min_quality}"
    return None


def evaluate_gate(
    wave: Sequence[SiteHealth], version: str, gate: Gate, *, wave_started: float, now: float
) -> GateDecision:
    """Decide whether a wave passed, failed, or needs more time."""
    failed = [(h.site, p) for h in wave if (p := site_problem(h, version, gate))]
    if failed:
        site, problem = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return GateDecision(
            GateOutcome.FAIL, f"site {site}: {problem}{more}", tuple(s for s, _ in failed)
        )
    pending = [h.site for h in wave if h.loaded_version != version or h.healthy_since is None]
    if pending:
        if now - wave_started > gate.wave_timeout_seconds:
            return GateDecision(
                GateOutcome.FAIL,
                f"{len(pending)} site(s) not on {version} and healthy after "
                f"{gate.wave_timeout_seconds:.0f}s: {', '.join(sorted(pending)[:5])}",
                tuple(sorted(pending)),
            )
        return GateDecision(GateOutcome.WAIT, f"{len(pending)} site(s) not yet on {version}")
    healthy_for = now - max(h.healthy_since or now for h in wave)
    if healthy_for < gate.min_healthy_seconds:
        return GateDecision(
            GateOutcome.WAIT, f"healthy for {healthy_for:.0f}s of {gate.min_healthy_seconds:.0f}s"
        )
    return GateDecision(GateOutcome.PASS, f"{len(wave)} site(s) healthy on {version}")


class RolloutState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"

    @property
    def final(self) -> bool:
        return self in (RolloutState.COMPLETED, RolloutState.ABORTED, RolloutState.ROLLED_BACK)


#: Which operator actions are allowed from which state, and the state they lead to.
TRANSITIONS: dict[str, dict[RolloutState, RolloutState]] = {
    "pause": {RolloutState.RUNNING: RolloutState.PAUSED},
    "resume": {RolloutState.PAUSED: RolloutState.RUNNING},
    "abort": {
        RolloutState.RUNNING: RolloutState.ABORTED,
        RolloutState.PAUSED: RolloutState.ABORTED,
    },
    "rollback": {
        RolloutState.RUNNING: RolloutState.ROLLED_BACK,
        RolloutState.PAUSED: RolloutState.ROLLED_BACK,
        RolloutState.ABORTED: RolloutState.ROLLED_BACK,
        RolloutState.COMPLETED: RolloutState.ROLLED_BACK,
    },
}


def transition(state: RolloutState, action: str) -> RolloutState:
    """The state after an operator `action`; raises ValueError when it is not allowed."""
    try:
        return TRANSITIONS[action][state]
    except KeyError:
        allowed = sorted(s.value for s in TRANSITIONS.get(action, {}))
        raise ValueError(
            f"cannot {action} a rollout that is {state.value}; allowed from: {', '.join(allowed)}"
        ) from None

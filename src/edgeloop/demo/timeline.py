"""The demo's timeline: journal events turned into the loop's steps, and the loop's timings.
Pure: events and observations in, steps and durations out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edgeloop.model.events import Event

STAGES = ("capture", "replicate", "trigger", "retrain", "register", "rollout", "swap", "watch")


@dataclass(frozen=True, order=True)
class Step:
    """One line of the timeline: when (wall time), which loop stage, where, what."""

    time: float
    stage: str
    site: str
    text: str
    kind: str = ""
    data: dict[str, Any] = field(default_factory=dict, compare=False)


COUNTED = {"object.created": "capture", "object.replicated": "replicate"}
"""Frequent events: counted per site; only the first of each site becomes a step."""


def describe(event: Event, *, origin: str) -> Step | None:
    """The timeline step of a journal event read from site `origin`'s journal (None: not a
    step of the loop). `object.*` events are described; the caller decides what to show."""
    t = event.time.timestamp()
    d = event.data
    kind = event.type
    if kind == "object.created":
        if not event.subject.startswith(("captures/", "labels/")):
            return None  # packages and desired state: their replication is the step
        what = "label batch" if event.subject.startswith("labels/") else "capture batch"
        return Step(t, "capture", origin, f"{what} written to the edge store", kind)
    if kind == "object.replicated":
        source = str(d.get("source_site") or origin)
        return Step(
            t, "replicate", source, f"{event.subject} copied to {origin}, SHA-256 verified", kind
        )
    run_id = event.subject.rsplit("/", 1)[-1]
    if kind == "run.started":
        return Step(t, "trigger", origin, f"run {run_id} started", kind, {"run": run_id})
    if kind == "run.succeeded":
        return Step(t, "retrain", origin, f"run {run_id} finished", kind, {"run": run_id})
    if kind == "run.failed":
        error = str(d.get("error", ""))[:120]
        return Step(t, "retrain", origin, f"run {run_id} failed: {error}", kind)
    if kind == "model.registered":
        signer = str(d.get("signer", ""))[:12]
        text = f"{d.get('name')}:{d.get('version')} registered and signed (key {signer})"
        return Step(t, "register", origin, text, kind, {"version": str(d.get("version"))})
    if kind == "model.promoted":
        text = (
            f"{d.get('name', event.subject)}:{d.get('version')} is now {d.get('alias', 'champion')}"
        )
        return Step(t, "register", origin, text, kind, {"version": str(d.get("version"))})
    if kind == "rollout.started":
        waves = d.get("waves", [])
        text = f"rollout {d.get('from')} -> {d.get('to')} in {len(waves)} waves {waves}"
        return Step(t, "rollout", origin, text, kind, {"version": str(d.get("to"))})
    if kind == "rollout.wave":
        text = f"wave {int(d.get('wave', 0)) + 1}: {d.get('sites')} site(s) move"
        return Step(t, "rollout", origin, text, kind)
    if kind == "rollout.completed":
        return Step(t, "rollout", origin, f"rollout completed: version {d.get('version')}", kind)
    if kind in ("rollout.halted", "rollout.rolled_back"):
        return Step(t, "rollout", origin, f"{kind.split('.')[1]}: {d.get('reason', '')}", kind)
    if kind == "drift.detected":
        site = str(d.get("site") or event.site)
        return Step(t, "watch", site, f"drift detected ({event.subject})", kind)
    if kind == "quality.degraded":
        site = str(d.get("site") or event.site)
        return Step(t, "watch", site, f"live quality below its bound: {_short(d)}", kind)
    if kind == "agent.joined":
        return Step(t, "rollout", event.site, "agent joined the fleet with its join token", kind)
    if kind in ("site.rolled_back", "site.apply_failed", "site.alert"):
        return Step(t, "swap", origin, f"{kind}: {event.subject} {_short(d)}", kind)
    return None


def _short(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(data.items())[:3])[:120]


@dataclass
class Timeline:
    """The steps so far (frequent ones counted), in time order."""

    steps: list[Step] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(kind, site) -> how many object.created / object.replicated events."""

    def add(self, step: Step) -> bool:
        """Record a step; True when it should be shown as a line."""
        if step.kind in COUNTED:
            self.counts[(step.kind, step.site)] += 1
            if self.counts[(step.kind, step.site)] > 1:
                return False
            step = Step(
                step.time, step.stage, step.site, "first " + step.text, step.kind, step.data
            )
        self.steps.append(step)
        self.steps.sort()
        return True

    def first(self, kind: str, **where: str) -> Step | None:
        for step in self.steps:
            if step.kind == kind and all(step.data.get(k) == v for k, v in where.items()):
                return step
        return None


@dataclass(frozen=True)
class LoopTiming:
    """How long the loop took to bring `version` to every edge, stage by stage (seconds)."""

    version: str
    trigger: str
    stages: dict[str, float]
    total: float


def loop_timing(
    version: str,
    run: dict[str, float | str],
    registered: float,
    rollout_started: float | None,
    served: dict[str, float],
    edges: list[str],
) -> LoopTiming | None:
    """Stage durations of the loop that produced `version`: the trigger's window closing to
    the run starting, the run, registration to rollout, rollout to the last edge serving.

    `run` holds `created`, `started`, `finished` (wall times) and `trigger`; `served` the wall
    time each edge first answered with `version`. None until every edge serves it.
    """
    if rollout_started is None or any(site not in served for site in edges):
        return None
    created, started, finished = (float(run[k]) for k in ("created", "started", "finished"))
    last = max(served[site] for site in edges)
    stages = {
        "window closed -> run started": max(0.0, started - created),
        "retrain, gate, register + sign": max(0.0, min(registered, finished) - started),
        "registered -> rollout started": max(0.0, rollout_started - registered),
        "rollout -> served at every edge": max(0.0, last - rollout_started),
    }
    return LoopTiming(version, str(run.get("trigger", "")), stages, max(0.0, last - created))

"""`edgeloop demo`: the whole loop on this machine. A workspace with a core and two edges,
model version 1 trained and rolled out, traffic with late labels at each edge, a drift at one
edge; the loop (capture, replicate, trigger, retrain, gate, register and sign, roll out in
waves, hot swap) runs by itself under `edgeloop up`'s supervisor while a timeline shows it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from edgeloop.demo import summary as render
from edgeloop.demo.checks import CaptureCheck, check_captures
from edgeloop.demo.scenario import MODEL
from edgeloop.demo.timeline import LoopTiming, Step, Timeline, describe, loop_timing
from edgeloop.demo.traffic import SiteTraffic, wait_until_serving
from edgeloop.demo.workspace import (
    DEPLOYMENT,
    DemoSettings,
    create_workspace,
    train_first_version,
)
from edgeloop.errors import EdgeloopError
from edgeloop.supervise.plan import AGENT, CORE, REPLICATOR, SERVER, UpOptions
from edgeloop.supervise.policy import RestartPolicy
from edgeloop.supervise.supervisor import Supervisor
from edgeloop.supervise.up import build_supervisor
from edgeloop.workspace import Workspace
from edgeloop.workspace.config import Tier

DRIFT_SITE = "edge-b"


@dataclass
class DemoResult:
    """What the demo did and what it checked, for the summary and the end-to-end test."""

    workspace: Path
    versions: list[int] = field(default_factory=list)
    new_version: str | None = None
    """The first version registered after the drift started (None: the loop did not close)."""
    serving: dict[str, str | None] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    captures: list[CaptureCheck] = field(default_factory=list)
    lineage_sites: list[str] = field(default_factory=list)
    timings: list[LoopTiming] = field(default_factory=list)
    traffic: dict[str, SiteTraffic] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    restarts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The loop closed: the new version serves everywhere, nothing failed or got lost."""
        new = self.new_version
        return (
            new is not None
            and all(v is not None and int(v) >= int(new) for v in self.serving.values())
            and not any(self.failures.values())
            and all(c.ok for c in self.captures)
        )


class JournalFollower:
    """Reads new events of every site's journal and adds them to the timeline."""

    def __init__(self, ws: Workspace, timeline: Timeline, since: float) -> None:
        self.ws = ws
        self.timeline = timeline
        self.since = since
        self.journals = {s.name: ws.journal(s.name) for s in ws.sites()}
        self.cursor = dict.fromkeys(self.journals, 0)
        self.lock = threading.Lock()

    def poll(self) -> list[Step]:
        shown: list[Step] = []
        with self.lock:
            for site, journal in self.journals.items():
                while True:
                    entries = journal.read(after=self.cursor[site], limit=1000)
                    if not entries:
                        break
                    self.cursor[site] = entries[-1].seq
                    for entry in entries:
                        step = describe(entry.event, origin=site)
                        if step is None or step.time < self.since - 60:
                            continue
                        step = self._explain(step)
                        if self.timeline.add(step):
                            shown.append(step)
        return shown

    def _explain(self, step: Step) -> Step:
        """Drift and quality events carry their window's time: show them when seen. A finished
        run says what its gate decided."""
        if step.kind in ("drift.detected", "quality.degraded"):
            return replace(step, time=max(step.time, time.time()))
        if step.kind != "run.succeeded":
            return step
        from edgeloop.pipeline.runs import RunStore

        core = self.ws.sites(Tier.CORE)[0].name
        runs = RunStore(self.ws.state_dir(core) / "pipelines.db")
        try:
            run_id = str(step.data.get("run", "")).rstrip("/").split("/")[-1]
            record = runs.get_run(run_id)
        except Exception:  # the record is an annotation only
            return step
        finally:
            runs.close()
        out = (record.outputs or {}).get("result") or {}
        if out.get("registered"):
            text = f"run {run_id}: the gate passed, version {out.get('version')}"
        elif out.get("refused"):
            text = f"run {run_id}: the gate refused: {'; '.join(out['refused'])[:140]}"
        else:
            text = f"run {run_id} finished"
        return replace(step, text=text)

    def close(self) -> None:
        for journal in self.journals.values():
            journal.close()


def demo_options(settings: DemoSettings) -> UpOptions:
    """The processes of `edgeloop up`, paced for the demo (small batches, quick polls)."""
    return UpOptions(
        extra_args={
            # One machine serves, trains and replicates at once: captures must not wait for
            # idle CPUs (the default lets them wait up to a minute).
            SERVER: [
                "--capture-batch-seconds",
                str(settings.capture_batch_seconds),
                "--capture-upload-defer",
                "0",
            ],
            REPLICATOR: ["--poll-interval", str(settings.replicate_poll)],
            AGENT: ["--interval", "0.5", "--heartbeat-interval", "1", "--probation", "5"],
            CORE: [],
        }
    )


def run_demo(
    directory: Path,
    settings: DemoSettings,
    *,
    console: Console | None = None,
    free_ports: bool = False,
) -> DemoResult:
    """Run the demo in `directory` (recreated) and return what it saw and checked."""
    out = console or Console()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # probes and traffic: thousands of lines
    started = time.time()
    clock = render.Clock(started)
    out.print(render.banner(settings))
    ws = create_workspace(directory, settings, free_ports=free_ports)
    result = DemoResult(ws.root)
    edges = [s.name for s in ws.sites(Tier.EDGE)]
    out.print(clock.line("setup", "-", f"workspace {ws.root}: core + {', '.join(edges)}"))
    first = train_first_version(ws, settings)
    out.print(
        clock.line(
            "retrain",
            "core",
            f"version 1 trained on the history (run {first['run_id']}), "
            "registered, signed, champion",
        )
    )
    supervisor = build_supervisor(
        ws, demo_options(settings), policy=RestartPolicy(initial=0.5, maximum=5.0), grace=10.0
    )
    state = supervisor.state
    out.print(
        clock.line(
            "setup", "-", f"dashboard {state.dashboard_url}  admin token {state.admin_token_file}"
        )
    )
    out.print(
        clock.line(
            "setup",
            "-",
            f"logs in {ws.root / 'logs'}; `edgeloop status -w {ws.root}` shows the processes",
        )
    )
    stop_all = threading.Event()
    sup_thread = threading.Thread(target=supervisor.run, args=(stop_all,), daemon=True)
    sup_thread.start()
    follower = JournalFollower(ws, result.timeline, started)
    try:
        _wait(
            lambda: supervisor.healthy(f"{ws.sites(Tier.CORE)[0].name}-{CORE}"),
            90,
            "the core's control plane to answer",
            supervisor,
            ws,
        )
        out.print(clock.line("setup", "core", f"control plane up at {state.control_url}"))
        _deploy(state.control_url, state.admin_token_file, settings)
        out.print(
            clock.line(
                "rollout",
                "core",
                f"deployment {DEPLOYMENT} follows {MODEL}@champion; rollouts in waves 50%,100%",
            )
        )
        for step in follower.poll():
            out.print(clock.step(step))
        result.traffic = _start_traffic(ws, settings, supervisor, follower, clock, out)
        _watch(ws, settings, result, supervisor, follower, clock, out)
        for traffic in result.traffic.values():
            traffic.close()
        out.print(
            clock.line(
                "capture", "-", "traffic stopped; waiting for the last batches to reach the core"
            )
        )
        _drain(ws, result, settings, follower, clock, out)
        _collect(ws, result, supervisor)
    finally:
        for traffic in result.traffic.values():
            traffic.stop.set()
        stop_all.set()
        sup_thread.join(60)
        follower.close()
    out.print(render.summary(result, settings, DRIFT_SITE))
    return result


def _wait(check: Any, timeout: float, what: str, supervisor: Supervisor, ws: Workspace) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        failed = [c.key for c in supervisor.state.components if c.status == "failed"]
        if failed:
            break
        time.sleep(0.2)
    raise EdgeloopError(f"timed out waiting for {what}; see the logs in {ws.root / 'logs'}")


def _deploy(control_url: str | None, token_file: str | None, settings: DemoSettings) -> None:
    from edgeloop.fleet.client import FleetClient

    assert control_url is not None and token_file is not None
    client = FleetClient(control_url, Path(token_file).read_text().strip(), timeout=30.0)
    gate = {
        "min_healthy_seconds": settings.wave_hold,
        "max_error_rate": 0.05,
        "wave_timeout_seconds": 120.0,
    }
    try:
        client.deploy(DEPLOYMENT, MODEL, None, "", alias="champion", waves="50,100", gate=gate)
    finally:
        client.close()


def _start_traffic(
    ws: Workspace,
    settings: DemoSettings,
    supervisor: Supervisor,
    follower: JournalFollower,
    clock: render.Clock,
    out: Console,
) -> dict[str, SiteTraffic]:
    traffic: dict[str, SiteTraffic] = {}
    stop = threading.Event()
    for i, edge in enumerate(ws.sites(Tier.EDGE)):
        url = f"http://127.0.0.1:{edge.serving_port}"
        deadline = time.monotonic() + 120
        version = None
        while version is None and time.monotonic() < deadline:
            for step in follower.poll():
                out.print(clock.step(step))
            version = wait_until_serving(url, stop, 1.0)
        if version is None:
            raise EdgeloopError(
                f"{edge.name} never served {MODEL}; see {ws.root / 'logs'}/{edge.name}-agent.log"
            )
        out.print(clock.line("swap", edge.name, f"serving {MODEL} version {version}"))
        traffic[edge.name] = SiteTraffic(
            edge.name,
            url,
            rate=settings.rate,
            label_delay=settings.label_delay,
            seed=100 + i,
        )
    drift_at = time.time() + settings.drift_after
    for site, t in traffic.items():
        t.drift_at = drift_at if site == DRIFT_SITE else None
        t.phase_at = drift_at
        t.start()
    out.print(
        clock.line(
            "capture",
            "-",
            f"traffic: {settings.rate:g} requests/s at each edge, labels "
            f"{settings.label_delay:g}s later; drift at {DRIFT_SITE} in {settings.drift_after:g}s",
        )
    )
    return traffic


def _watch(
    ws: Workspace,
    settings: DemoSettings,
    result: DemoResult,
    supervisor: Supervisor,
    follower: JournalFollower,
    clock: render.Clock,
    out: Console,
) -> None:
    begin = time.monotonic()
    drift_shown = False
    closed_at: float | None = None
    drift = result.traffic[DRIFT_SITE]
    seen: dict[str, set[str]] = {s: set() for s in result.traffic}
    while time.monotonic() - begin < settings.duration:
        for step in follower.poll():
            out.print(clock.step(step))
        if not drift_shown and drift.drift_started is not None:
            drift_shown = True
            out.print(
                clock.line(
                    "watch",
                    DRIFT_SITE,
                    "drift injected: a new production line, `load` now varies and matters",
                    at=drift.drift_started,
                )
            )
        for site, traffic in result.traffic.items():
            for version in traffic.stats.versions():
                if version not in seen[site]:
                    seen[site].add(version)
                    if len(seen[site]) > 1:
                        out.print(
                            clock.line(
                                "swap",
                                site,
                                f"hot swap: now answering with version {version}",
                                at=traffic.stats.first_seen[version],
                            )
                        )
        new = _new_version(result, drift)
        if new is not None and all(new in t.stats.first_seen for t in result.traffic.values()):
            closed_at = closed_at or time.monotonic()
            if settings.fast and time.monotonic() - closed_at >= 3.0:
                break
        time.sleep(0.25)
    # Do not stop in the middle of a rollout: give the newest version time to reach every edge.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for step in follower.poll():
            out.print(clock.step(step))
        registered = [s for s in result.timeline.steps if s.kind == "model.registered"]
        newest = max((int(s.data["version"]) for s in registered), default=None)
        if newest is None or all(
            str(newest) in t.stats.first_seen for t in result.traffic.values()
        ):
            break
        time.sleep(0.25)


def _new_version(result: DemoResult, drift: SiteTraffic) -> str | None:
    """The first version registered after the drift started."""
    if drift.drift_started is None:
        return None
    for step in result.timeline.steps:
        if step.kind == "model.registered" and step.time >= drift.drift_started:
            return str(step.data.get("version"))
    return None


def _drain(
    ws: Workspace,
    result: DemoResult,
    settings: DemoSettings,
    follower: JournalFollower,
    clock: render.Clock,
    out: Console,
) -> None:
    """Wait until every answered request's capture is at the core (or 60 s pass)."""
    core = ws.store(ws.sites(Tier.CORE)[0].name)
    deadline = time.monotonic() + 60 + 3 * settings.capture_batch_seconds
    while time.monotonic() < deadline:
        for step in follower.poll():
            out.print(clock.step(step))
        checks = [check_captures(core, s, t.stats.ok_ids) for s, t in result.traffic.items()]
        if all(c.missing == 0 for c in checks):
            break
        time.sleep(0.5)
    result.captures = [check_captures(core, s, t.stats.ok_ids) for s, t in result.traffic.items()]


def _collect(ws: Workspace, result: DemoResult, supervisor: Supervisor) -> None:
    from edgeloop.pipeline.runs import RunStore
    from edgeloop.registry.workspace import open_registry

    drift = result.traffic[DRIFT_SITE]
    result.new_version = _new_version(result, drift)
    result.failures = {s: len(t.stats.failures) for s, t in result.traffic.items()}
    result.restarts = {c.key: c.restarts for c in supervisor.state.components}
    for site, traffic in result.traffic.items():
        versions = traffic.stats.versions()
        result.serving[site] = versions[-1] if versions else None
    registry = open_registry(ws)
    try:
        result.versions = [v.version for v in registry.versions(MODEL)]
        if result.new_version is not None:
            info = registry.get(MODEL, int(result.new_version))
            result.lineage_sites = sorted({c.site for c in info.lineage.captures if c.site})
    finally:
        registry.close()
    core = ws.sites(Tier.CORE)[0].name
    runs = RunStore(ws.state_dir(core) / "pipelines.db")
    try:
        records = runs.list_runs(limit=500)
    finally:
        runs.close()
    edges = list(result.traffic)
    for record in records:
        out = (record.outputs or {}).get("result") or {}
        if not out.get("registered") or not record.started_at or not record.finished_at:
            continue
        version = str(out.get("version"))
        registered = result.timeline.first("model.registered", version=version)
        rollout = result.timeline.first("rollout.started", version=version)
        served = {
            s: t.stats.first_seen[version]
            for s, t in result.traffic.items()
            if version in t.stats.first_seen
        }
        timing = loop_timing(
            version,
            {
                "created": _ts(record.created_at),
                "started": _ts(record.started_at),
                "finished": _ts(record.finished_at),
                "trigger": record.trigger,
            },
            registered.time if registered else _ts(record.finished_at),
            rollout.time if rollout else None,
            served,
            edges,
        )
        if timing is not None:
            result.timings.append(timing)
    result.timings.sort(key=lambda t: int(t.version))


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()

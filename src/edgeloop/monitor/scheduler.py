"""The core's monitoring schedule: every `monitoring.every`, judge each monitored model's
complete windows at every site once, and score its live quality.

A window counts as judged when its `report.json` is in the core store, so a restarted core
(or `edgeloop drift report` run by hand) never judges a window twice, and windows missed
while the core was down are judged when it comes back (up to `monitoring.catch_up` ago).
Events keep their ids, so even a window judged twice raises its `drift.detected` once.

Captures can arrive late (an edge cut off from the core replicates its backlog when it is
back). Each pass notes the capture batches it has seen per site (`monitoring/state/`); a
batch first seen after a window was judged, with rows in that window, has the window
judged again, so drift at an edge that was offline is still found.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from edgeloop.errors import EdgeloopError, ObjectNotFound
from edgeloop.journal.base import EventSink, JournalSink
from edgeloop.model.events import utcnow
from edgeloop.monitor.captures import (
    CAPTURES,
    batch_keys,
    discover_sites,
    read_batch,
    time_range,
)
from edgeloop.monitor.job import DriftJob, DriftOutcome
from edgeloop.monitor.profiles import profiled_models
from edgeloop.monitor.quality import QualityJob, QualityReport
from edgeloop.monitor.report import report_prefix
from edgeloop.monitor.window import as_utc, floor_time, parse_duration
from edgeloop.store import ObjectStore
from edgeloop.workspace import Workspace
from edgeloop.workspace.config import MonitoringConfig

log = logging.getLogger(__name__)


def seen_key(model: str, site: str) -> str:
    """Where the scheduler notes the capture batches of `model` at `site` it has seen."""
    return f"monitoring/state/{model}/{site}/seen.json"


def due_windows(
    now: datetime, length: timedelta, grace: timedelta, catch_up: timedelta
) -> list[tuple[datetime, datetime]]:
    """Aligned windows that ended at least `grace` before `now` and at most `catch_up` before
    the latest of them, oldest first; always at least the latest one."""
    last_end = floor_time(as_utc(now) - grace, length)
    count = 1 + int(catch_up / length)
    return [(last_end - (i + 1) * length, last_end - i * length) for i in reversed(range(count))]


@dataclass
class MonitorPass:
    """What one pass did: the drift reports it wrote, the quality reports, and the jobs that
    failed (`<model> drift` or `<model> quality` -> error message)."""

    drift: list[DriftOutcome] = field(default_factory=list)
    quality: list[QualityReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def emitted(self) -> int:
        """`drift.detected` events this pass journaled for the first time."""
        return sum(o.emitted for o in self.drift)


@contextmanager
def _failures(failed: dict[str, str], what: str) -> Iterator[None]:
    """Record and log an error of one job instead of raising it: one model's missing profile
    or bad batch must not stop the other jobs; the next pass tries again."""
    try:
        yield
    except EdgeloopError as exc:  # an expected problem, with a message saying what to do
        log.warning("monitoring %s: %s", what, exc)
        failed[what] = str(exc)
    except Exception as exc:
        log.exception("monitoring %s failed; retrying on the next pass", what)
        failed[what] = f"{type(exc).__name__}: {exc}"


@dataclass
class MonitorScheduler:
    """Runs the drift and quality jobs over the core store on the `monitoring:` schedule."""

    store: ObjectStore
    config: MonitoringConfig
    sink: EventSink | None = None
    clock: Callable[[], datetime] = utcnow

    def models(self) -> list[str]:
        """Models to watch: those with a `monitoring.models` entry or a reference profile."""
        return sorted({*self.config.models, *profiled_models(self.store)})

    def judged(self, model: str, site: str, end: datetime) -> bool:
        """Whether the window ending at `end` already has its report in the store."""
        try:
            self.store.head(report_prefix(model, site, end) + "report.json")
        except ObjectNotFound:
            return False
        return True

    def check_drift(self, model: str, now: datetime) -> list[DriftOutcome]:
        """Judge every due, not yet judged window of `model` at each site with captures."""
        job = DriftJob(self.store, self.config, self.sink)
        length = parse_duration(self.config.for_model(model).window or self.config.window)
        windows = due_windows(
            now,
            length,
            parse_duration(self.config.grace, allow_zero=True),
            parse_duration(self.config.catch_up, allow_zero=True),
        )
        outcomes = []
        for site in discover_sites(self.store, model):
            listed, seen, late = self._late_windows(model, site, windows)
            for start, end in windows:
                # One HEAD per window and pass: a late batch's window is judged either way.
                if end in late or not self.judged(model, site, end):
                    outcomes.append(job.run_site(model, site, start, end))
            if listed != seen:  # noted after judging: a crash before it judges them again
                self.store.put(seen_key(model, site), orjson.dumps({"batches": sorted(listed)}))
        return outcomes

    def _late_windows(
        self, model: str, site: str, windows: list[tuple[datetime, datetime]]
    ) -> tuple[set[str], set[str] | None, set[datetime]]:
        """The batch keys of the windows' days, those an earlier pass saw (None: none noted),
        and the ends of the windows that a batch not seen before has rows in."""
        listed = set(batch_keys(self.store, CAPTURES, model, site, windows[0][0], windows[-1][1]))
        try:
            with self.store.get(seen_key(model, site)) as reader:
                seen = set(orjson.loads(reader.read())["batches"])
        except ObjectNotFound:
            return listed, None, set()  # a first pass: every window is judged with all it has
        late: set[datetime] = set()
        for key in sorted(listed - seen):
            span = time_range(read_batch(self.store, key), key)
            if span is None:
                continue
            first, last = span
            late.update(end for start, end in windows if first < end and last >= start)
        return listed, seen, late

    def check_quality(self, model: str, now: datetime) -> QualityReport | None:
        """Score `model`'s recent buckets when it has a quality bound (None: it has none)."""
        if self.config.for_model(model).quality.bound is None:
            return None
        job = QualityJob(self.store, self.config, self.sink)
        return job.run(model, since=self.config.quality_since, end=now)

    def tick(self, now: datetime | None = None) -> MonitorPass:
        """One pass over every watched model; a model that fails is logged and skipped."""
        now = as_utc(now) if now is not None else self.clock()
        done = MonitorPass()
        for model in self.models():
            with _failures(done.failed, f"{model} drift"):
                done.drift += self.check_drift(model, now)
            with _failures(done.failed, f"{model} quality"):
                quality = self.check_quality(model, now)
                if quality is not None:
                    done.quality.append(quality)
        return done

    def serve(self, stop: threading.Event) -> None:
        """Run a pass every `monitoring.every` until `stop` is set (never when it is null)."""
        if self.config.every is None:
            return
        interval = parse_duration(self.config.every).total_seconds()
        while not stop.is_set():
            try:
                result = self.tick()
                if result.drift:
                    log.info(
                        "monitoring: %d window(s) judged, %d drift event(s) emitted",
                        len(result.drift),
                        result.emitted,
                    )
            except Exception:  # keep the core alive; the next pass retries
                log.exception("monitoring pass failed; retrying")
            stop.wait(interval)


def monitor_in_thread(ws: Workspace, site: str, stop: threading.Event) -> threading.Thread | None:
    """Start the core's monitoring schedule in a daemon thread with its own store and journal
    connection (None when `monitoring.every` is null); it ends when `stop` is set."""
    config = ws.config.monitoring
    if config.every is None:
        return None
    parse_duration(config.every)  # a bad interval fails the start, not a thread later

    def run() -> None:
        store, journal = ws.store(site), ws.journal(site)
        try:
            MonitorScheduler(store, config, JournalSink(journal)).serve(stop)
        finally:
            journal.close()
            store.close()

    thread = threading.Thread(target=run, name="edgeloop-monitor", daemon=True)
    thread.start()
    return thread


def monitor_once(ws: Workspace, site: str) -> MonitorPass | None:
    """One monitoring pass at the core `site` (None when `monitoring.every` is null)."""
    if ws.config.monitoring.every is None:
        return None
    store, journal = ws.store(site), ws.journal(site)
    try:
        return MonitorScheduler(store, ws.config.monitoring, JournalSink(journal)).tick()
    finally:
        journal.close()
        store.close()

"""The drift job: per model and site, judge the last window of captures against the version's
reference profile, write the report into the core store and emit `drift.detected`.

The event id is `drift:<model>:<site>:<window-start>/<window-end>`, so running the job again
over the same window (after a crash, or from cron and a person at once) emits nothing new,
and the trigger that turns the event into a retraining run sees it once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgeloop.errors import ProfileNotFound
from edgeloop.journal.base import EventSink
from edgeloop.model.events import Event, EventType, utcnow
from edgeloop.monitor.captures import WindowData, discover_sites, read_window
from edgeloop.monitor.drift import DriftReport, DriftSettings, evaluate_drift
from edgeloop.monitor.profile import ReferenceProfile
from edgeloop.monitor.profiles import load_reference, profile_versions
from edgeloop.monitor.report import write_report
from edgeloop.monitor.window import as_utc, last_complete_window, parse_duration
from edgeloop.store import ObjectStore
from edgeloop.workspace.config import MonitoringConfig

log = logging.getLogger(__name__)
_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class DriftOutcome:
    """What one site's run produced: the report, where it was written, and the event."""

    report: DriftReport
    keys: dict[str, str]
    event: Event | None
    emitted: bool


def drift_event_id(model: str, site: str, start: datetime, end: datetime) -> str:
    """The idempotency key of a drift event: one per model, site and window."""
    return f"drift:{model}:{site}:{as_utc(start):{_STAMP}}/{as_utc(end):{_STAMP}}"


def drift_event(report: DriftReport, keys: dict[str, str]) -> Event:
    """The `drift.detected` event of a report that found drift."""
    return Event(
        id=drift_event_id(report.model, report.site, report.window_start, report.window_end),
        type=EventType.DRIFT_DETECTED,
        site=report.site,
        subject=keys.get("json", f"{report.model}@{report.version}"),
        data={
            "model": report.model,
            "version": report.version,
            "site": report.site,
            "window_start": report.window_start.isoformat(),
            "window_end": report.window_end.isoformat(),
            "rows": report.rows,
            "drifted": report.drifted,
            "report": keys.get("json"),
            "html": keys.get("html"),
        },
        time=report.window_end,
    )


def settings_for(config: MonitoringConfig, model: str) -> DriftSettings:
    """The drift settings of `model` from the workspace's `monitoring:` section."""
    entry = config.for_model(model)
    return DriftSettings(
        significance=entry.significance or config.significance,
        min_rows=config.min_rows,
        multivariate=config.multivariate if entry.multivariate is None else entry.multivariate,
        thresholds=lambda feature: config.feature_thresholds(model, feature),
    )


def _choose_version(store: ObjectStore, model: str, data: WindowData) -> str | None:
    """The version that served most of the window's rows and has a profile (None: latest)."""
    if "version" not in data.records.column_names:
        return None
    served = Counter(v for v in data.records.column("version").to_pylist() if v is not None)
    profiled = set(profile_versions(store, model))
    for version, _ in served.most_common():
        if str(version) in profiled:
            return str(version)
    return None


@dataclass
class DriftJob:
    """Runs drift checks over the captures in `store` (the core store) for one workspace."""

    store: ObjectStore
    config: MonitoringConfig
    sink: EventSink | None = None

    def window(self, length: str | None, model: str, end: datetime | None) -> tuple[datetime, ...]:
        """[start, end) of the window to judge: `end` (default: the last complete aligned
        window before now) minus the model's window length."""
        text = length or self.config.for_model(model).window or self.config.window
        span: timedelta = parse_duration(text)
        if end is None:
            return last_complete_window(utcnow(), span)
        return as_utc(end) - span, as_utc(end)

    def run(
        self,
        model: str,
        *,
        sites: list[str] | None = None,
        window: str | None = None,
        end: datetime | None = None,
        version: str | None = None,
        write: bool = True,
        emit: bool = True,
    ) -> list[DriftOutcome]:
        """Judge every site (or `sites`) of `model` over one window; one outcome per site."""
        start, stop = self.window(window, model, end)
        chosen = sites if sites is not None else discover_sites(self.store, model)
        return [
            self.run_site(model, site, start, stop, version=version, write=write, emit=emit)
            for site in chosen
        ]

    def run_site(
        self,
        model: str,
        site: str,
        start: datetime,
        end: datetime,
        *,
        version: str | None = None,
        profile: ReferenceProfile | None = None,
        write: bool = True,
        emit: bool = True,
    ) -> DriftOutcome:
        """Judge one site over [start, end) against the site's own reference profile of the
        chosen version (every site's profile when the site has none), write the report and
        emit an event on drift."""
        data = read_window(self.store, model, site, start, end)
        if profile is None:
            chosen = version or _choose_version(self.store, model, data)
            profile = load_reference(self.store, model, chosen, site)
        elif version is not None and profile.version != version:
            raise ProfileNotFound(f"profile is of version {profile.version}, not {version}")
        report = evaluate_drift(
            profile,
            data.features,
            data.predictions,
            site=site,
            window_start=start,
            window_end=end,
            settings=settings_for(self.config, model),
        )
        keys = write_report(self.store, report) if write else {}
        event = drift_event(report, keys) if report.status == "drift" else None
        emitted = False
        if event is not None and emit and self.sink is not None:
            emitted = self.sink.emit(event)
        log.info(
            "drift %s at %s [%s, %s): %s %s",
            model, site, start.isoformat(), end.isoformat(), report.status, report.drifted,
        )  # fmt: skip
        return DriftOutcome(report, keys, event, emitted)

"""Reads behind the dashboard's JSON routes: drift reports from the core store, the journal
backwards from its newest entry, live quality scored from captures and labels.

The monitor (numpy, pyarrow) is imported on first use, so a control plane that never shows
these pages never loads it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from edgeloop.dashboard.views import (
    drift_plots,
    drift_summary,
    json_safe,
    timeline_entry,
    type_matches,
)
from edgeloop.journal import Journal
from edgeloop.store.base import ObjectStore
from edgeloop.workspace.config import MonitoringConfig

#: How many journal entries one timeline request looks through at most (filters may match
#: few of them; the page asks again with `before` for older ones).
MAX_TIMELINE_SCAN = 20_000
_TIMELINE_CHUNK = 1000


def read_timeline(
    journal: Journal, *, before: int | None, limit: int, types: Sequence[str]
) -> dict[str, Any]:
    """Up to `limit` entries older than seq `before` (None: the newest), newest first,
    of the `types` asked for (all when empty)."""
    top = journal.last_seq() if before is None else min(before - 1, journal.last_seq())
    entries: list[dict[str, Any]] = []
    high = top
    scanned = 0
    while high > 0 and len(entries) < limit and scanned < MAX_TIMELINE_SCAN:
        low = max(0, high - _TIMELINE_CHUNK)
        chunk = journal.read(low, limit=high - low)
        scanned += high - low
        for item in reversed(chunk):
            if item.seq <= high and (not types or type_matches(item.event.type, types)):
                entries.append(timeline_entry(item))
                if len(entries) == limit:
                    break
        high = low
    # Full page: older entries start below the last one shown. Otherwise the scan stopped
    # at `high` (the start, or its cap) and every seq up to `high` is still unread.
    following = entries[-1]["seq"] if len(entries) == limit else high + 1
    return {
        "entries": entries,
        "last_seq": journal.last_seq(),
        "next_before": following if following > 1 else None,
    }


class DriftReports:
    """Drift report summaries per model and site, read from the core store; a report once
    read is kept in memory (the job writes the same bytes for a window every time)."""

    def __init__(self, store: ObjectStore, max_cached: int = 4096) -> None:
        self.store = store
        self.max_cached = max_cached
        self._cache: dict[tuple[str, str | None, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def models(self) -> list[str]:
        """Models with a reference profile in the store (the drift job needs one to judge)."""
        from edgeloop.monitor.profiles import PROFILE_ROOT

        prefix = f"{PROFILE_ROOT}/"
        found = {info.key[len(prefix) :].split("/", 1)[0] for info in self.store.list(prefix)}
        return sorted(m for m in found if m)

    def by_site(self, model: str, limit: int) -> list[dict[str, Any]]:
        """Per site: the last `limit` windows' summaries, oldest first, and the newest
        report's plots."""
        from edgeloop.monitor.report import REPORT_ROOT

        prefix = f"{REPORT_ROOT}/{model}/"
        keys: dict[str, list[tuple[str, Any]]] = {}
        for info in self.store.list(prefix):
            site, _, rest = info.key[len(prefix) :].partition("/")
            if rest.endswith("/report.json"):
                keys.setdefault(site, []).append((info.key, info))
        out = []
        for site in sorted(keys):
            recent = sorted(keys[site], key=lambda pair: pair[0])[-limit:]
            reports = [self._read(key, info.etag or info.sha256, info.size) for key, info in recent]
            out.append(
                {
                    "site": site,
                    "reports": [r["summary"] for r in reports],
                    "latest_plots": reports[-1]["plots"] if reports else [],
                }
            )
        return out

    def _read(self, key: str, tag: str | None, size: int) -> dict[str, Any]:
        cache_key = (key, tag, size)
        with self._lock:
            hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        with self.store.get(key) as reader:
            report = orjson.loads(reader.read())
        value = {"summary": drift_summary(report), "plots": drift_plots(report)}
        with self._lock:
            if len(self._cache) >= self.max_cached:
                self._cache.clear()  # a rare full reset is cheaper than LRU bookkeeping here
            self._cache[cache_key] = value
        return value


class QualityScores:
    """Live quality per model, scored from the captures and labels in the core store by the
    monitor's quality job (no events emitted), kept for `ttl` seconds."""

    def __init__(
        self,
        store: ObjectStore,
        config: MonitoringConfig,
        ttl: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def scores(self, model: str, since: str) -> dict[str, Any]:
        key = (model, since)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and self.clock() - hit[0] < self.ttl:
            return hit[1]
        from edgeloop.monitor.quality import QualityJob

        report = QualityJob(self.store, self.config).run(model, since=since, emit=False)
        value = json_safe(report.to_dict())
        value["since"] = since
        with self._lock:
            self._cache[key] = (self.clock(), value)
        return value

"""Triggers: window logic (pure) and a worker that turns journal events into exactly one run each.

A window collects distinct members (replicated objects, drift events) for one rule. Admitting a
member, closing the window and creating its run happen in one SQLite transaction keyed by the
member and the window id, so duplicated or shuffled events, and replays after a crash, change
nothing twice. A run that was claimed but not started (kill -9 in between) stays `pending` and
the worker starts it when it comes back.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from edgeloop.journal.base import Journal, JournalSink
from edgeloop.model.events import Event, EventType
from edgeloop.pipeline.cron import Cron
from edgeloop.pipeline.graph import Pipeline
from edgeloop.pipeline.runs import FAILED, PENDING, RUNNING, RunStore
from edgeloop.workspace.config import TriggerRule

log = logging.getLogger(__name__)
CONSUMER = "pipeline-triggers"
OPEN, CLAIMED = "open", "claimed"


def member_of(rule: TriggerRule, event: Event) -> tuple[str, dict[str, Any]] | None:
    """The member an event adds to `rule`'s window (its dedupe key and data), or None."""
    if event.type != rule.event:
        return None
    if rule.event == EventType.OBJECT_REPLICATED:
        key = str(event.data.get("key", ""))
        if not key or not key.startswith(rule.prefix):
            return None
        # the same bytes replicated twice are one record; new bytes under a key are another
        return f"{key}@{event.data.get('sha256', '')}", {
            "key": key,
            "sha256": event.data.get("sha256"),
            "site": event.data.get("source_site", event.site),
        }
    if rule.event == EventType.DRIFT_DETECTED:
        if rule.model is not None and event.data.get("model") != rule.model:
            return None
        return event.id, {"subject": event.subject, **event.data}
    return None


def window_expired(opened_at: datetime, max_wait: timedelta | None, now: datetime) -> bool:
    """Whether a non-empty window has waited long enough to close without `min_records`."""
    return max_wait is not None and now - opened_at >= max_wait


def _duration(text: str | None) -> timedelta | None:
    if text is None:
        return None
    from edgeloop.monitor.window import parse_duration

    return parse_duration(text)


@dataclass
class TriggerState:
    """The durable side of triggers, in the run store's database."""

    runs: RunStore
    pipeline_for: Callable[[str], tuple[str, dict[str, Any], str]]  # rule -> name, params, exec

    def admit(
        self, rule: TriggerRule, member: str, data: dict[str, Any], now: datetime
    ) -> str | None:
        """Add `member` to the rule's open window; return the window id if this closed it."""
        with self.runs.transaction() as c:
            inserted = c.execute(
                "INSERT OR IGNORE INTO trigger_members (rule, member, window_id, data) "
                "VALUES (?, ?, '', ?)",
                (rule.name, member, orjson.dumps(data).decode()),
            ).rowcount
            if not inserted:
                return None  # a duplicate: already counted in some window
            row = c.execute(
                "SELECT window_id, members FROM trigger_windows WHERE rule = ? AND state = ?",
                (rule.name, OPEN),
            ).fetchone()
            if row is None:
                n = c.execute(
                    "SELECT COUNT(*) FROM trigger_windows WHERE rule = ?", (rule.name,)
                ).fetchone()[0]
                window_id, count = f"{rule.name}:{n + 1}", 0
                c.execute(
                    "INSERT INTO trigger_windows (window_id, rule, state, opened_at) "
                    "VALUES (?, ?, ?, ?)",
                    (window_id, rule.name, OPEN, now.isoformat()),
                )
            else:
                window_id, count = row
            c.execute(
                "UPDATE trigger_members SET window_id = ? WHERE rule = ? AND member = ?",
                (window_id, rule.name, member),
            )
            c.execute(
                "UPDATE trigger_windows SET members = ? WHERE window_id = ?", (count + 1, window_id)
            )
            if count + 1 >= rule.min_records:
                self._claim(c, rule, window_id)
                return window_id
        return None

    def close_expired(self, rule: TriggerRule, now: datetime) -> list[str]:
        """Claim the rule's open, non-empty window if it has waited `max_wait`."""
        wait = _duration(rule.max_wait)
        if wait is None:
            return []
        with self.runs.transaction() as c:
            row = c.execute(
                "SELECT window_id, opened_at FROM trigger_windows WHERE rule = ? AND state = ? "
                "AND members > 0",
                (rule.name, OPEN),
            ).fetchone()
            if row and window_expired(datetime.fromisoformat(row[1]), wait, now):
                self._claim(c, rule, row[0])
                return [row[0]]
        return []

    def claim_slot(
        self, rule: TriggerRule, window_id: str, now: datetime, extra: dict[str, Any] | None = None
    ) -> bool:
        """Claim a window with no members (a cron slot, a manual firing); False if it exists."""
        with self.runs.transaction() as c:
            inserted = c.execute(
                "INSERT OR IGNORE INTO trigger_windows (window_id, rule, state, opened_at) "
                "VALUES (?, ?, ?, ?)",
                (window_id, rule.name, OPEN, now.isoformat()),
            ).rowcount
            if inserted:
                self._claim(c, rule, window_id, extra)
            return bool(inserted)

    def _claim(
        self,
        c: sqlite3.Connection,
        rule: TriggerRule,
        window_id: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        members = [
            orjson.loads(r[0])
            for r in c.execute(
                "SELECT data FROM trigger_members WHERE window_id = ? ORDER BY member", (window_id,)
            )
        ]
        name, params, executor = self.pipeline_for(rule.name)
        params = {
            **params,
            **rule.params,
            **(extra or {}),
            "window": {"id": window_id, "rule": rule.name, "members": members},
        }
        run_id = "w-" + window_id.replace(":", "-")
        self.runs.create_run(
            name,
            params=params,
            trigger=f"{rule.event}:{rule.name}",
            executor=executor,
            window_id=window_id,
            run_id=run_id,
            conn=c,
        )
        c.execute(
            "UPDATE trigger_windows SET state = ?, run_id = ? WHERE window_id = ?",
            (CLAIMED, run_id, window_id),
        )


@dataclass
class TriggerWorker:
    """Reads the core journal, fills windows, starts claimed runs; one per core process."""

    rules: list[TriggerRule]
    journal: Journal
    runs: RunStore
    start_run: Callable[[str], None]  # run id -> runs it to the end
    pipeline_for: Callable[[str], tuple[str, dict[str, Any], str]]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    repairs: list[Callable[[], object]] = field(default_factory=list)  # more crash recovery
    _cron_checked: dict[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = TriggerState(self.runs, self.pipeline_for)
        self._crons = {r.name: Cron(r.cron) for r in self.rules if r.cron}

    def recover(self) -> None:
        """After a crash: a run left `running` did not finish; record it failed, never rerun it.
        Then run the `repairs` of the components the core hosts (e.g. the registry's)."""
        for run in self.runs.list_runs(limit=10_000, state=RUNNING):
            self.runs.finish_run(
                run.run_id, FAILED, error="interrupted: the core stopped while this run was running"
            )
        for repair in self.repairs:
            try:
                repair()
            except Exception:  # a repair that fails now is retried at the next start
                log.exception("crash recovery step %r failed; carrying on", repair)

    def poll(self) -> int:
        """One pass: admit new events, close expired windows, fire due cron slots; return the
        number of windows claimed."""
        claimed = 0
        now = self.clock()
        types = sorted(
            {r.event for r in self.rules if r.event in ("object.replicated", "drift.detected")}
        )
        after = self.journal.cursor(CONSUMER)
        while types:
            entries = self.journal.read(after, limit=1000, types=types)
            if not entries:
                break
            for entry in entries:
                for rule in self.rules:
                    found = member_of(rule, entry.event)
                    if found and self.state.admit(rule, found[0], found[1], now):
                        claimed += 1
            after = entries[-1].seq
            self.journal.commit(CONSUMER, after)  # after admission: a replay is harmless
        for rule in self.rules:
            claimed += len(self.state.close_expired(rule, now))
            cron = self._crons.get(rule.name)
            if cron is not None:
                since = self._cron_checked.get(rule.name, now - timedelta(minutes=1))
                slot = cron.latest_slot(since, now)
                self._cron_checked[rule.name] = now
                if slot and self.state.claim_slot(rule, f"{rule.name}:{slot:%Y%m%dT%H%M}", now):
                    claimed += 1
        return claimed

    def fire(self, rule_name: str, window_id: str | None = None) -> str:
        """Claim a manual window now (idempotent by `window_id`); return its run id."""
        rule = next((r for r in self.rules if r.name == rule_name), None)
        if rule is None:
            raise KeyError(rule_name)
        window_id = window_id or f"{rule.name}:manual-{self.clock():%Y%m%dT%H%M%S%f}"
        self.state.claim_slot(rule, window_id, self.clock())
        return "w-" + window_id.replace(":", "-")

    def start_pending(self) -> int:
        """Start every claimed-not-started run, oldest first; return how many ran."""
        pending = [
            r for r in reversed(self.runs.list_runs(limit=10_000, state=PENDING)) if r.window_id
        ]
        pause = float(os.environ.get("EDGELOOP_PIPELINE_PAUSE_AFTER_CLAIM", "0") or 0)
        if pending and pause:
            time.sleep(pause)  # fault injection for tests: a window to kill -9 in
        for run in pending:
            self.start_run(run.run_id)
        return len(pending)

    def serve(self, stop: threading.Event, interval: float = 0.1) -> None:
        """Poll and start runs until `stop` is set."""
        self.recover()
        while not stop.is_set():
            try:
                self.poll()
                self.start_pending()
            except Exception:  # keep the core alive; the next pass retries from the cursor
                log.exception("trigger pass failed; retrying")
            stop.wait(interval)


def sink_for(journal: Journal) -> JournalSink:
    """Where runs emit their events: the same core journal the triggers read."""
    return JournalSink(journal)


def pipeline_table(
    rules: list[TriggerRule], configs: Mapping[str, Any]
) -> Callable[[str], tuple[str, dict[str, Any], str]]:
    """rule name -> (pipeline name, default params, executor) from the workspace config."""
    by_rule = {r.name: r.pipeline for r in rules}

    def lookup(rule: str) -> tuple[str, dict[str, Any], str]:
        name = by_rule[rule]
        cfg = configs.get(name)
        return name, dict(cfg.params) if cfg else {}, cfg.executor if cfg else "inline"

    return lookup


def resolve(name: str, configs: Mapping[str, Any]) -> Pipeline:
    """The Pipeline a configured name (or a module:attribute reference) points to."""
    from edgeloop.pipeline.builtin import BUILTIN
    from edgeloop.pipeline.graph import load_pipeline

    if name in configs:
        return load_pipeline(configs[name].ref)
    if name in BUILTIN:
        return load_pipeline(BUILTIN[name])
    return load_pipeline(name)

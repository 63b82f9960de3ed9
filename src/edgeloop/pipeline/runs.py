"""Run records (run and step status, timings, errors) and trigger claims, in one SQLite file.

A trigger window's claim and its run record are written in the same transaction, so a crash can
never leave a claimed window without a run, nor start two runs for one window.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from edgeloop.errors import PipelineError
from edgeloop.sqlite_wal import enable_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    window_id TEXT UNIQUE,
    trigger TEXT NOT NULL DEFAULT 'manual',
    executor TEXT NOT NULL DEFAULT 'inline',
    state TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    outputs TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cached INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    finished_at TEXT,
    seconds REAL,
    error TEXT,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS trigger_windows (
    window_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    members INTEGER NOT NULL DEFAULT 0,
    run_id TEXT
);
CREATE INDEX IF NOT EXISTS trigger_windows_open ON trigger_windows (rule, state);
CREATE TABLE IF NOT EXISTS trigger_members (
    rule TEXT NOT NULL,
    member TEXT NOT NULL,
    window_id TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (rule, member)
);
"""

PENDING, RUNNING, SUCCEEDED = "pending", "running", "succeeded"
FAILED, SKIPPED = "failed", "skipped"


def now_iso() -> str:
    """The current UTC time as ISO 8601, the only format run records hold."""
    return datetime.now(UTC).isoformat()


@dataclass(slots=True)
class StepRecord:
    """One step's outcome within a run."""

    step: str
    state: str
    attempts: int = 0
    cached: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass(slots=True)
class RunRecord:
    """One pipeline run: what ran, why, where, how it ended, and each step."""

    run_id: str
    pipeline: str
    state: str
    trigger: str = "manual"
    executor: str = "inline"
    window_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    outputs: dict[str, Any] | None = None
    steps: list[StepRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON values."""
        out = {k: getattr(self, k) for k in self.__slots__ if k != "steps"}
        out["steps"] = [{k: getattr(s, k) for k in s.__slots__} for s in self.steps]
        return out


class RunStore:
    """Run records and trigger state in a SQLite database (WAL, safe across processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        enable_wal(self._db.execute)
        self._db.execute("PRAGMA synchronous=FULL")  # a claim must survive power loss
        self._db.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE, so concurrent workers serialize)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # runs ------------------------------------------------------------------------------------

    def create_run(
        self,
        pipeline: str,
        *,
        params: dict[str, Any] | None = None,
        trigger: str = "manual",
        executor: str = "inline",
        window_id: str | None = None,
        run_id: str | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> str:
        """Insert a pending run and return its id; inside `conn`'s transaction when given."""
        run_id = run_id or uuid.uuid4().hex[:16]
        row = (
            run_id,
            pipeline,
            window_id,
            trigger,
            executor,
            PENDING,
            orjson.dumps(params or {}).decode(),
            now_iso(),
        )
        sql = (
            "INSERT INTO runs (run_id, pipeline, window_id, trigger, executor, state, params, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if conn is not None:
            conn.execute(sql, row)
        else:
            with self.transaction() as c:
                c.execute(sql, row)
        return run_id

    def start_run(self, run_id: str, executor: str | None = None) -> bool:
        """Move a pending run to running (recording the executor that really runs it); False
        if it was not pending (someone else started it)."""
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE runs SET state = ?, started_at = ?, executor = coalesce(?, executor) "
                "WHERE run_id = ? AND state = ?",
                (RUNNING, now_iso(), executor, run_id, PENDING),
            )
            return cur.rowcount == 1

    def finish_run(
        self, run_id: str, state: str, *, error: str | None = None, outputs: Any = None
    ) -> None:
        """Record how a run ended."""
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET state = ?, finished_at = ?, error = ?, outputs = ? "
                "WHERE run_id = ?",
                (
                    state,
                    now_iso(),
                    error,
                    None if outputs is None else orjson.dumps(outputs).decode(),
                    run_id,
                ),
            )

    def record_step(self, run_id: str, rec: StepRecord) -> None:
        """Insert or update one step's record."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO steps (run_id, step, state, attempts, cached, started_at, "
                "finished_at, seconds, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, step) DO UPDATE SET state = excluded.state, "
                "attempts = excluded.attempts, cached = excluded.cached, "
                "started_at = excluded.started_at, finished_at = excluded.finished_at, "
                "seconds = excluded.seconds, error = excluded.error",
                (
                    run_id,
                    rec.step,
                    rec.state,
                    rec.attempts,
                    int(rec.cached),
                    rec.started_at,
                    rec.finished_at,
                    rec.seconds,
                    rec.error,
                ),
            )

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id (prefixes of 6+ characters work too)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE run_id = ? OR (length(?) >= 6 AND run_id LIKE ? || '%')",
                (run_id, run_id, run_id),
            ).fetchall()
        if len(rows) != 1:
            raise PipelineError(
                f"no single run matches {run_id!r}; list runs with `edgeloop pipeline runs`"
            )
        return self._run_from_row(rows[0])

    def list_runs(
        self, *, limit: int = 50, pipeline: str | None = None, state: str | None = None
    ) -> list[RunRecord]:
        """The newest runs first."""
        sql = "SELECT * FROM runs WHERE 1=1"
        args: list[Any] = []
        if pipeline:
            sql, args = sql + " AND pipeline = ?", [*args, pipeline]
        if state:
            sql, args = sql + " AND state = ?", [*args, state]
        with self._lock:
            rows = self._db.execute(
                sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [self._run_from_row(r) for r in rows]

    def _run_from_row(self, row: tuple[Any, ...]) -> RunRecord:
        (
            run_id,
            pipeline,
            window_id,
            trigger,
            executor,
            state,
            params,
            created_at,
            started_at,
            finished_at,
            error,
            outputs,
        ) = row
        with self._lock:
            steps = self._db.execute(
                "SELECT step, state, attempts, cached, started_at, finished_at, seconds, error "
                "FROM steps WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            ).fetchall()
        return RunRecord(
            run_id=run_id,
            pipeline=pipeline,
            state=state,
            trigger=trigger,
            executor=executor,
            window_id=window_id,
            params=orjson.loads(params),
            created_at=created_at,
            started_at=started_at,
            finished_at=finished_at,
            error=error,
            outputs=None if outputs is None else orjson.loads(outputs),
            steps=[StepRecord(s[0], s[1], s[2], bool(s[3]), s[4], s[5], s[6], s[7]) for s in steps],
        )

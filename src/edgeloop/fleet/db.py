"""The control plane's database schema (SQLAlchemy Core): SQLite by default, PostgreSQL at scale.

Times are seconds since the epoch (floats) so both backends compare them the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from edgeloop.errors import ConfigError
from edgeloop.sqlite_wal import enable_wal

metadata = sa.MetaData()

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("project", sa.String(63), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("site", sa.String(63)),
    # Only the SHA-256 of a token is kept: a leaked database does not leak usable tokens.
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("labels", sa.JSON),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(32)),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Column("used_at", sa.Float),
)

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("project", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("joined_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float),
    sa.Column("healthy", sa.Boolean),
    sa.Column("healthy_since", sa.Float),
    sa.Column("status", sa.JSON),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("project", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("selector", sa.String(1000), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # A deployment that follows a registry alias (e.g. champion): when the alias moves, a
    # rollout with `policy` (waves, gate) moves the deployment to the alias's version.
    sa.Column("alias", sa.String(63)),
    sa.Column("policy", sa.JSON),
)

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("project", sa.String(63), nullable=False, index=True),
    sa.Column("deployment", sa.String(63), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("from_version", sa.String(100), nullable=False),
    sa.Column("to_version", sa.String(100), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("waves", sa.JSON, nullable=False),
    sa.Column("current_wave", sa.Integer, nullable=False),
    sa.Column("wave_started_at", sa.Float, nullable=False),
    sa.Column("gate", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(200)),
)

rollout_sites = sa.Table(
    "rollout_sites",
    metadata,
    sa.Column("rollout_id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(63), primary_key=True),
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("problem", sa.Text),
)

desired = sa.Table(
    "desired",
    metadata,
    sa.Column("project", sa.String(63), primary_key=True),
    sa.Column("site", sa.String(63), primary_key=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("etag", sa.String(40), nullable=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("project", sa.String(63)),
    sa.Column("token_id", sa.String(32)),
    sa.Column("actor", sa.String(200)),
    sa.Column("role", sa.String(16)),
    sa.Column("client", sa.String(100)),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("path", sa.String(1000), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("detail", sa.JSON),
)


def normalize_db_url(url: str, *, base_dir: Path | None = None) -> str:
    """A SQLAlchemy URL from `sqlite:///path`, a plain path, or `postgresql://...`."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    if "://" in url:
        raise ConfigError(
            f"unknown database URL {url!r}; use sqlite:///path/fleet.db or postgresql://..."
        )
    path = Path(url)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    enable_wal(cursor.execute)
    # NORMAL in WAL mode: a committed write survives a process crash; the last commits may be
    # lost on power loss, which heartbeats tolerate and control actions are audited against.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _json_dumps(value: Any) -> str:
    # orjson writes the heartbeat batch's statuses several times faster than the json module;
    # the json module still writes what orjson refuses (integers beyond 64 bits).
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _json_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def create_db_engine(url: str, *, base_dir: Path | None = None) -> Engine:
    """An engine for `url` with the schema created; SQLite gets WAL and a busy timeout."""
    url = normalize_db_url(url, base_dir=base_dir)
    codec: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": _json_loads}
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **codec
        )
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **codec)
    try:
        metadata.create_all(engine)
        _add_missing_columns(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(f"cannot open the control-plane database {url}: {exc}") from exc
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Columns added after a database was first created (create_all adds tables only)."""
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as conn:
                    conn.execute(
                        sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                    )

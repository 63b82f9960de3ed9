"""The registry's tables (SQLAlchemy 2.0): models, versions, aliases. SQLite by default,
PostgreSQL through the same URL-configured engine."""

from __future__ import annotations

import time
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from edgeloop.errors import ConfigError
from edgeloop.model.events import utcnow
from edgeloop.sqlite_wal import enable_wal


class VersionState(StrEnum):
    """Where a version is in its life. `pending` is a reserved number whose package is
    being written, `failed` one whose registration did not finish (never reused); only
    `registered` versions may be served."""

    PENDING = "pending"
    FAILED = "failed"
    REGISTERED = "registered"
    ARCHIVED = "archived"
    REVOKED = "revoked"


# Allowed state changes; a revoked version never comes back.
TRANSITIONS: dict[VersionState, frozenset[VersionState]] = {
    VersionState.PENDING: frozenset({VersionState.REGISTERED, VersionState.FAILED}),
    VersionState.FAILED: frozenset(),
    VersionState.REGISTERED: frozenset({VersionState.ARCHIVED, VersionState.REVOKED}),
    VersionState.ARCHIVED: frozenset({VersionState.REGISTERED, VersionState.REVOKED}),
    VersionState.REVOKED: frozenset(),
}


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class ModelRow(Base):
    """A registered model name."""

    __tablename__ = "registry_models"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class VersionRow(Base):
    """One model version: its package location and digests, metrics, lineage and card.
    Everything but `state` is written once, at registration."""

    __tablename__ = "registry_versions"
    __table_args__ = (
        UniqueConstraint("model", "version", name="uq_registry_version"),
        UniqueConstraint("model", "source_key", name="uq_registry_source_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(ForeignKey("registry_models.name"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=VersionState.PENDING.value)
    source_key: Mapped[str | None] = mapped_column(String(200), default=None)
    # host:pid:start of the process writing a pending version, so a dead one is swept at once
    owner: Mapped[str | None] = mapped_column(String(200), default=None)
    prefix: Mapped[str] = mapped_column(String(300))
    format: Mapped[str] = mapped_column(String(32))
    runtime: Mapped[str] = mapped_column(String(32))
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)  # path -> sha256
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)
    signer: Mapped[str | None] = mapped_column(String(64), default=None)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    registered: Mapped[datetime | None] = mapped_column(default=None)
    # when `model.registered` went out; None on a registered version means it may have been
    # lost (a crash right after registering) and `Registry.recover` sends it again
    announced: Mapped[datetime | None] = mapped_column(default=None)


class AliasRow(Base):
    """A movable name (`champion`, `candidate`, user-defined) for one version of a model."""

    __tablename__ = "registry_aliases"

    model: Mapped[str] = mapped_column(ForeignKey("registry_models.name"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated: Mapped[datetime] = mapped_column(default=utcnow)


def database_url(url: str | Path) -> str:
    """An SQLAlchemy URL from a path or URL; `postgresql://` uses the psycopg 3 driver."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        if text.startswith(("sqlite://", "postgresql+psycopg://")):
            return text
        raise ConfigError(
            f"unsupported registry database URL {text!r}; use a path, sqlite:///path.db "
            "or postgresql://user@host/db"
        )
    return f"sqlite:///{Path(text).absolute()}"


def make_engine(url: str | Path) -> Engine:
    """An engine on `url` with the registry tables created; SQLite gets WAL and a busy wait."""
    full = database_url(url)
    if full.startswith("sqlite:///") and full != "sqlite:///:memory:":
        Path(full.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(full, future=True, pool_pre_ping=not full.startswith("sqlite"))
    if full.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cursor = conn.cursor()
            enable_wal(cursor.execute)
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    for attempt in range(3):
        try:
            Base.metadata.create_all(engine)
            break
        except DBAPIError:
            if attempt == 2:
                raise
            time.sleep(0.05)  # another process created the tables at the same moment: recheck
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Add columns newer than an existing database (create_all makes missing tables only)."""
    for table in Base.metadata.sorted_tables:
        present = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            assert isinstance(column, Column) and column.nullable  # only optional columns added
            ddl = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    # names come from our own table metadata, never from input
                    add = f"ALTER TABLE {table.name} ADD COLUMN {column.name} {ddl}"
                    conn.execute(text(add))
            except DBAPIError:
                # another process added it at the same moment; anything else fails the check
                columns = inspect(engine).get_columns(table.name)
                if column.name not in {c["name"] for c in columns}:
                    raise

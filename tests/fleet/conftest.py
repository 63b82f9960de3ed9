"""A control plane per test, on SQLite and on a real PostgreSQL, driven over its ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeloop.testing.fleet import Fleet, make_fleet


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh control-plane database: a SQLite file, then a database on real PostgreSQL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'fleet.db'}"


@pytest.fixture
def fleet(tmp_path: Path, db_url: str) -> Iterator[Fleet]:
    fleet = make_fleet(tmp_path, db_url)
    yield fleet
    fleet.http.close()
    fleet.plane.engine.dispose()
    fleet.journal.close()


@pytest.fixture
def sqlite_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A control plane on SQLite only, for tests whose subject is not the database."""
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'fleet.db'}")
    yield fleet
    fleet.http.close()
    fleet.plane.engine.dispose()
    fleet.journal.close()

"""Shared fixtures: temp workspaces and a real S3 server (rclone serve s3) per session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test files are imported in importlib mode (so two areas may both have a test_cli.py);
# helper modules that live beside their tests are made importable by name here.
for _area in sorted(Path(__file__).parent.iterdir()):
    if _area.is_dir() and not _area.name.startswith(("_", ".")) and str(_area) not in sys.path:
        sys.path.insert(0, str(_area))

from edgeloop.testing.postgres import PostgresServer, find_pg_bin  # noqa: E402
from edgeloop.testing.s3server import S3Server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One real S3-compatible server for the whole session; tests use their own buckets."""
    with S3Server(tmp_path_factory.mktemp("s3root")) as server:
        yield server


@pytest.fixture
def s3_url(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """An s3:// URL of a fresh bucket for this test."""
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    return s3_server.url(f"t-{safe}-{id(request) % 10000}")


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    """A fresh workspace made by `edgeloop init`."""
    from edgeloop.workspace import init_workspace

    return init_workspace(tmp_path / "ws").root


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (initdb in a temp dir, on a free port)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed; `make system-deps` installs it")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database()

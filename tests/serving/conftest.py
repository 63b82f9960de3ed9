"""Fixtures for serving tests: a package repository and a running server over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeloop.serving.config import ServeConfig
from edgeloop.testing.serving import ThreadServer, make_package, serving


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with model `demo` version 1 (ONNX)."""
    root = tmp_path / "repo"
    make_package(root, "demo", 1)
    return root


@pytest.fixture
def config(tmp_path: Path, repo: Path) -> ServeConfig:
    return ServeConfig(
        repository=repo,
        state_dir=tmp_path / "state",
        capture_to=str(tmp_path / "store"),
        capture_batch_seconds=0.2,
        capture_upload_defer=0,  # uploads at once however busy the test machine is
        poll_interval=0.1,
        max_body_bytes=64 * 1024,
        server="uvicorn",
    )


@pytest.fixture
def server(config: ServeConfig) -> Iterator[ThreadServer]:
    with serving(config) as running:
        yield running

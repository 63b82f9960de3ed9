"""Pipeline test fixtures: one shared local Ray cluster per session (started only if asked for)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeloop.pipeline.executors import InlineExecutor
from edgeloop.pipeline.executors.base import Executor


@pytest.fixture(scope="session")
def ray_executor() -> Iterator[Executor]:
    pytest.importorskip("ray")
    from edgeloop.pipeline.executors.ray import RayExecutor

    ex = RayExecutor("local", num_cpus=2)
    yield ex
    ex.close()


@pytest.fixture(params=["inline", pytest.param("ray", marks=pytest.mark.ray)])
def executor(request: pytest.FixtureRequest) -> Executor:
    """Every executor contract test runs against both executors."""
    if request.param == "inline":
        return InlineExecutor()
    ex: Executor = request.getfixturevalue("ray_executor")
    return ex

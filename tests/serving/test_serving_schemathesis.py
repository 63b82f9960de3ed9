"""Schemathesis against the published OpenAPI document, on a real server over loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from edgeloop import __version__
from edgeloop.serving.config import ServeConfig
from edgeloop.serving.openapi import openapi_document
from edgeloop.testing.serving import ThreadServer, make_package, serving

schema = schemathesis.openapi.from_dict(openapi_document(__version__))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    root = tmp_path_factory.mktemp("schemathesis")
    make_package(root / "repo", "demo", 1)
    config = ServeConfig(
        repository=root / "repo",
        state_dir=root / "state",
        capture_to=str(root / "store"),
        max_body_bytes=64 * 1024,
    )
    with serving(config) as running:
        yield running


def test_published_document_matches_the_served_one(live: ThreadServer) -> None:
    import httpx

    assert httpx.get(f"{live.url}/openapi.json").json() == openapi_document(__version__)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, live: ThreadServer) -> None:
    case.call_and_validate(
        base_url=live.url,
        headers=live.admin(),
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ],
    )

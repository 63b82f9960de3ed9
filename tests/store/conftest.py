"""Store fixtures: the same `store` fixture is a memory, file and real S3 (rclone) store."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeloop.store import LocalStore, MemoryStore, ObjectStore, open_store
from edgeloop.testing.s3server import S3Server

_bucket_numbers = itertools.count()


def fresh_s3_store(server: S3Server, prefix: str = "") -> ObjectStore:
    """An S3 store on a new, empty bucket of the shared rclone server."""
    return open_store(server.url(f"contract-{next(_bucket_numbers)}", prefix))


@pytest.fixture(params=["memory", "file", "s3", "s3-prefixed"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: S3Server
) -> Iterator[ObjectStore]:
    """Each implementation in turn; `s3-prefixed` is S3 with a key prefix in the URL."""
    kind = request.param
    made: ObjectStore
    if kind == "memory":
        made = MemoryStore()
    elif kind == "file":
        made = LocalStore(tmp_path / "store")
    elif kind == "s3":
        made = fresh_s3_store(s3_server)
    else:
        made = fresh_s3_store(s3_server, "deep/prefix")
    yield made
    made.close()

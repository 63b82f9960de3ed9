"""Fixtures for registry tests: signing keys, small real ONNX packages, registries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeloop.journal import SQLiteJournal
from edgeloop.journal.base import JournalSink
from edgeloop.registry import Registry, generate_signing_key, sign_package
from edgeloop.store import LocalStore
from edgeloop.testing.serving import make_package


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    """The core's signing key pair."""
    path = tmp_path / "keys" / "signing-key.pem"
    return KeyPair(path, generate_signing_key(path))


@pytest.fixture
def other_keys(tmp_path: Path) -> KeyPair:
    """A second key pair: an attacker's, or another workspace's."""
    path = tmp_path / "keys" / "other-key.pem"
    return KeyPair(path, generate_signing_key(path))


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """An unsigned package: a small random forest as ONNX, with its manifest."""
    return make_package(tmp_path / "src", name="demo", version=1)


@pytest.fixture
def signed(package: Path, keys: KeyPair) -> Path:
    """The package, signed with `keys`."""
    sign_package(package, keys.private)
    return package


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A registry database URL: SQLite in a temp dir, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "registry.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[SQLiteJournal]:
    j = SQLiteJournal(tmp_path / "journal.db")
    yield j
    j.close()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "core-store")


@pytest.fixture
def registry(
    database: str, store: LocalStore, keys: KeyPair, journal: SQLiteJournal
) -> Iterator[Registry]:
    reg = Registry(database, store, public_key=keys.public, signing_key=keys.private,
                   events=JournalSink(journal))  # fmt: skip
    yield reg
    reg.close()

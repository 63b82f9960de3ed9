"""Fixtures of the replication tests: a journaled directory store as the source."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite imports test files in importlib mode; make the doubles module beside them importable.
sys.path.insert(0, str(Path(__file__).parent))

from replication_doubles import Source

from edgeloop.journal import JournalSink, SQLiteJournal
from edgeloop.store import LocalStore
from edgeloop.store.journaled import JournaledStore


@pytest.fixture
def source(tmp_path: Path) -> Source:
    store = LocalStore(tmp_path / "source", fsync=False)
    journal = SQLiteJournal(tmp_path / "source-journal.db")
    return Source(store, journal, JournaledStore(store, JournalSink(journal), "edge-a"))

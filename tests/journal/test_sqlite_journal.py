"""Contract tests of the event journal on every backend (SQLite, and a real PostgreSQL):
idempotent append, cursors, durability."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgeloop.errors import JournalError
from edgeloop.journal import Journal, JournalSink, SQLiteJournal, open_journal
from edgeloop.model.events import Event


def ev(i: int, type_: str = "object.created") -> Event:
    return Event(id=f"e{i}", type=type_, site="edge-a", subject=f"k/{i}", data={"i": i})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh journal's URL on each backend."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url")) + "?journal=edge-a"
    return f"sqlite:///{tmp_path / 'journal.db'}"


@pytest.fixture
def journal(journal_url: str) -> Journal:
    return open_journal(journal_url)


def test_append_is_idempotent_by_event_id(journal: Journal) -> None:
    assert journal.append(ev(1)) is True
    assert journal.append(ev(1)) is False
    assert journal.append_many([ev(1), ev(2), ev(2), ev(3)]) == 2
    assert [e.event.id for e in journal.read()] == ["e1", "e2", "e3"]
    assert journal.last_seq() == 3


def test_read_from_cursor_with_limit_and_types(journal: Journal) -> None:
    journal.append_many([ev(i, "a" if i % 2 else "b") for i in range(1, 11)])
    first = journal.read(0, limit=3)
    assert [e.seq for e in first] == [1, 2, 3]
    rest = journal.read(first[-1].seq)
    assert [e.seq for e in rest] == list(range(4, 11))
    assert {e.event.type for e in journal.read(types=["a"])} == {"a"}
    assert len(journal.read(types=["a"])) == 5


def test_events_round_trip_every_field(journal: Journal) -> None:
    original = Event(
        id="x",
        type="t",
        site="s",
        subject="sub",
        data={"n": [1, 2], "u": "é"},
        time=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
    )
    journal.append(original)
    assert journal.read()[0].event == original


def test_cursor_commits_and_never_moves_back(journal: Journal) -> None:
    assert journal.cursor("replicator") == 0
    journal.commit("replicator", 5)
    journal.commit("replicator", 3)
    assert journal.cursor("replicator") == 5
    assert journal.cursor("other") == 0


def test_survives_reopen(journal_url: str) -> None:
    first = open_journal(journal_url)
    first.append_many([ev(1), ev(2)])
    first.commit("c", 1)
    first.close()
    again = open_journal(journal_url)
    assert [e.event.id for e in again.read()] == ["e1", "e2"]
    assert again.cursor("c") == 1
    assert again.append(ev(2)) is False


def test_concurrent_appenders_never_duplicate(journal: Journal) -> None:
    ids = list(range(200)) * 3
    random.Random(7).shuffle(ids)

    def worker(chunk: list[int]) -> None:
        for i in chunk:
            journal.append(ev(i))

    threads = [threading.Thread(target=worker, args=(ids[n::4],)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = journal.read(limit=10_000)
    assert sorted(e.event.id for e in entries) == sorted(f"e{i}" for i in range(200))
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)


def test_two_processes_share_one_journal(journal_url: str) -> None:
    code = (
        "import sys\n"
        "from edgeloop.journal import open_journal\n"
        "from edgeloop.model.events import Event\n"
        "j = open_journal(sys.argv[1])\n"
        "for i in range(100): j.append(Event(id=f'p{i % 60}', type='t', site='s', subject=''))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, journal_url], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    entries = open_journal(journal_url).read(limit=1000)
    assert len(entries) == 60
    assert [e.seq for e in entries] == list(range(1, 61)), "seqs are contiguous"


def test_sink_reports_duplicates(journal: Journal) -> None:
    sink = JournalSink(journal)
    assert sink.emit(ev(9)) is True
    assert sink.emit(ev(9)) is False


def test_unknown_journal_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="unknown journal URL"):
        open_journal("ftp://x/y")
    j = open_journal(f"sqlite:///{tmp_path}/abs.db")
    assert Path(j.url.removeprefix("sqlite:///")) == tmp_path / "abs.db"


def test_corrupt_journal_file_gives_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot open journal"):
        SQLiteJournal(bad)

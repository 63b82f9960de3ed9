"""What only the PostgreSQL journal has: named journals in one database, clear errors."""

from __future__ import annotations

import socket

import pytest

from edgeloop.errors import JournalError
from edgeloop.journal import open_journal
from edgeloop.journal.postgres import split_journal_url
from edgeloop.model.events import Event


def test_journal_name_comes_from_the_url() -> None:
    assert split_journal_url("postgres://u@h:5/db?journal=edge-a&sslmode=disable") == (
        "postgresql://u@h:5/db?sslmode=disable",
        "edge-a",
    )
    assert split_journal_url("postgresql://u@h/db")[1] == "core"


@pytest.mark.postgres
def test_named_journals_share_a_database_without_mixing(postgres_url: str) -> None:
    a = open_journal(postgres_url + "?journal=edge-a")
    b = open_journal(postgres_url + "?journal=edge-b")
    a.append(Event(id="x", type="t", site="edge-a", subject=""))
    assert b.append(Event(id="x", type="t", site="edge-b", subject="")) is True
    a.commit("c", 1)
    assert [e.event.site for e in a.read()] == ["edge-a"]
    assert [e.event.site for e in b.read()] == ["edge-b"]
    assert b.cursor("c") == 0


def test_unreachable_postgres_gives_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(JournalError, match="is PostgreSQL running"):
        open_journal(f"postgresql://nobody:secret@127.0.0.1:{port}/db?connect_timeout=2")

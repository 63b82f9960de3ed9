"""The pure planner: journal events to tasks, listing diffs, event ids and redacted URLs."""

from __future__ import annotations

from datetime import UTC, datetime

from edgeloop.journal.base import JournalEntry
from edgeloop.model.events import Event, EventType
from edgeloop.replication.plan import (
    CopyTask,
    LedgerRecord,
    diff_listing,
    public_url,
    replicated_event,
    tasks_from_journal,
)
from edgeloop.store.base import ObjectInfo

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def created(seq: int, key: str, sha: str, size: int = 3) -> JournalEntry:
    return JournalEntry(
        seq,
        Event(
            id=f"created:e:{key}@{sha}",
            type=EventType.OBJECT_CREATED,
            site="e",
            subject=key,
            data={"key": key, "size": size, "sha256": sha},
        ),
    )


def info(key: str, sha: str | None, size: int = 3) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, modified=T0, sha256=sha)


def test_journal_tasks_keep_the_prefix_and_the_last_version_per_key() -> None:
    entries = [
        created(1, "captures/a", "1"),
        created(2, "labels/x", "2"),
        created(3, "captures/a", "3"),
        created(4, "captures/b", "4"),
        JournalEntry(5, Event(type="run.started", site="c", subject="r")),
    ]
    tasks = tasks_from_journal(entries, "captures/")
    assert sorted(tasks, key=lambda t: t.key) == [
        CopyTask("captures/a", 3, "3"),
        CopyTask("captures/b", 3, "4"),
    ]


def test_diff_skips_what_the_ledger_has_done_in_the_same_version() -> None:
    ledger = {
        "a": LedgerRecord("sa", 3, "done"),
        "b": LedgerRecord("old", 3, "done"),
        "c": LedgerRecord("sc", 3, "pending"),
    }
    source = [info("a", "sa"), info("b", "sb"), info("c", "sc"), info("d", "sd")]
    tasks = diff_listing(source, [], ledger.get)
    assert [t.key for t in tasks] == ["b", "c", "d"]


def test_diff_marks_objects_the_target_seems_to_have_for_checking() -> None:
    source = [info("a", "sa"), info("b", "sb"), info("c", None, size=5)]
    target = [info("a", "sa"), info("b", "other"), info("c", None, size=5)]
    tasks = {t.key: t for t in diff_listing(source, target, lambda key: None)}
    assert tasks["a"].check_target
    assert not tasks["b"].check_target
    assert tasks["c"].check_target  # no digest: sizes match, the copier verifies


def test_replicated_event_id_is_deterministic_and_url_has_no_secrets() -> None:
    url = "s3://bucket/p?endpoint=http://h:9000&secret_access_key=SECRET"
    one = replicated_event("k", 3, "abc", target_site="core", source_site="e", source_url=url)
    two = replicated_event("k", 3, "abc", target_site="core", source_site="e", source_url=url)
    assert one.id == two.id == "replicated:core:k@abc"
    assert one.type == EventType.OBJECT_REPLICATED
    assert "SECRET" not in one.to_json().decode()
    assert one.data["source_url"] == "s3://bucket/p"
    assert {"key", "size", "sha256", "source_site", "source_url", "replicated_at"} <= set(one.data)


def test_public_url_drops_userinfo() -> None:
    assert public_url("s3://user:pw@host:9000/b?x=1#f") == "s3://host:9000/b"
    assert public_url("file:///data/store") == "file:///data/store"

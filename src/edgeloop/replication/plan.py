"""Pure planning: which objects to copy, from journal events or from a listing diff."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from edgeloop.journal.base import JournalEntry
from edgeloop.model.events import Event, EventType, utcnow
from edgeloop.store.base import ObjectInfo


@dataclass(frozen=True, slots=True)
class CopyTask:
    """One object to bring to the target; `sha256` is None when the source did not record it.

    `check_target` asks the copier to look at the target first, because the object may
    already be there (a copy cut short by a crash, or written by someone else).
    """

    key: str
    size: int
    sha256: str | None
    check_target: bool = False


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """What the ledger remembers of one key."""

    sha256: str | None
    size: int
    state: str


def in_prefix(key: str, prefix: str) -> bool:
    """True if `key` is under the replication prefix ('' matches everything)."""
    return key.startswith(prefix)


def tasks_from_journal(entries: Iterable[JournalEntry], prefix: str) -> list[CopyTask]:
    """Copy tasks for the `object.created` events under `prefix`, the last version per key."""
    latest: dict[str, CopyTask] = {}
    for entry in entries:
        event = entry.event
        if event.type != EventType.OBJECT_CREATED:
            continue
        key = str(event.data.get("key") or event.subject)
        if not key or not in_prefix(key, prefix):
            continue
        sha = event.data.get("sha256")
        latest[key] = CopyTask(key, int(event.data.get("size") or 0), str(sha) if sha else None)
    return list(latest.values())


def _same(record_sha: str | None, record_size: int, info: ObjectInfo) -> bool:
    if info.sha256 and record_sha:
        return info.sha256 == record_sha
    # Without a digest on one side only the size can be compared; the copy re-verifies.
    return info.size == record_size


def diff_listing(
    source: Sequence[ObjectInfo],
    target: Iterable[ObjectInfo],
    ledger: Callable[[str], LedgerRecord | None],
) -> list[CopyTask]:
    """Tasks for source objects that the ledger does not show as replicated in this version.

    `target` is the target's listing over the same key range; an object that seems to be
    there already becomes a task with `check_target`, so it is verified, not re-sent.
    """
    at_target = {info.key: info for info in target}
    tasks = []
    for info in source:
        record = ledger(info.key)
        if (
            record is not None
            and record.state == "done"
            and _same(record.sha256, record.size, info)
        ):
            continue
        present = at_target.get(info.key)
        maybe_there = present is not None and _same(present.sha256, present.size, info)
        tasks.append(CopyTask(info.key, info.size, info.sha256, check_target=maybe_there))
    return tasks


@lru_cache(maxsize=64)  # called per replicated event, with the same few store URLs
def public_url(url: str) -> str:
    """`url` without credentials, query string or fragment, for events and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def replicated_event(
    task_key: str, size: int, sha256: str, *, target_site: str, source_site: str, source_url: str
) -> Event:
    """The `object.replicated` event of one verified copy; its id is the same on every retry."""
    now = utcnow()
    return Event(
        id=f"replicated:{target_site}:{task_key}@{sha256}",
        type=EventType.OBJECT_REPLICATED,
        site=target_site,
        subject=task_key,
        data={
            "key": task_key,
            "size": size,
            "sha256": sha256,
            "source_site": source_site,
            "source_url": public_url(source_url),
            "replicated_at": now.isoformat(),
        },
        time=now,
    )

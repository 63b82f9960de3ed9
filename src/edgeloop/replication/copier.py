"""Copy one object from source to target, verified by SHA-256 at the target before it is visible."""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from edgeloop.errors import ChecksumMismatch, ObjectNotFound, StoreUnavailable
from edgeloop.replication.plan import CopyTask
from edgeloop.replication.rate import TokenBucket
from edgeloop.store.base import ObjectStore

# OS errors that say "the store is not there right now", not "this object is bad".
_OUTAGE_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
    errno.ENOSPC,
    errno.EIO,
}


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    """The result of one copy: `sha256` is what the target verified; `skipped` means the
    target already had this version, `gone` that the source no longer has the key."""

    key: str
    size: int
    sha256: str | None
    expected_sha256: str | None
    skipped: bool = False
    gone: bool = False


def is_outage(exc: BaseException) -> bool:
    """True for errors that mean a store is unreachable (retry everything later), as opposed
    to errors about one object (retry that object, and give up after a while)."""
    if isinstance(exc, StoreUnavailable | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and exc.errno in _OUTAGE_ERRNOS


def _throttled(chunks: Iterable[bytes], bucket: TokenBucket | None) -> Iterator[bytes]:
    for chunk in chunks:
        if bucket is not None:
            bucket.take(len(chunk))
        yield chunk


def _digest_of(source: ObjectStore, key: str) -> str:
    with source.get(key) as reader:
        digest = hashlib.sha256()
        for chunk in reader:
            digest.update(chunk)
    return digest.hexdigest()


def _already_there(target: ObjectStore, key: str, sha256: str) -> bool:
    try:
        return target.head(key).sha256 == sha256
    except ObjectNotFound:
        return False


def copy_object(
    source: ObjectStore, target: ObjectStore, task: CopyTask, bucket: TokenBucket | None = None
) -> CopyOutcome:
    """Stream `task.key` to the target, which verifies the digest before making it visible.

    The expected digest is the one the source recorded for the bytes being read now (a newer
    version than the task's wins); objects with no recorded digest are hashed in a first pass,
    so the target can still refuse bytes that changed on the way.
    """
    key = task.key
    if task.check_target and task.sha256 and _already_there(target, key, task.sha256):
        return CopyOutcome(key, task.size, task.sha256, task.sha256, skipped=True)
    try:
        reader = source.get(key)
    except ObjectNotFound:
        return CopyOutcome(key, task.size, None, task.sha256, gone=True)
    with reader:
        expected = reader.info.sha256 or None
        if expected is None:
            expected = _digest_of(source, key)
        if task.check_target and expected != task.sha256 and _already_there(target, key, expected):
            return CopyOutcome(key, reader.info.size, expected, task.sha256, skipped=True)
        info = target.put(key, _throttled(reader, bucket), expected_sha256=expected)
    if info.sha256 is not None and info.sha256 != expected:
        # A store that ignores expected_sha256 must not get a corrupt copy marked done.
        raise ChecksumMismatch(f"{key}: target recorded sha256 {info.sha256}, sent {expected}")
    return CopyOutcome(key, info.size, expected, task.sha256)


# A copy left out of a batch (stopped or paused before its turn): it stays pending, unattempted.
NOT_ATTEMPTED = None

CopyResult = CopyOutcome | Exception | None


def copy_batch(
    source: ObjectStore,
    target: ObjectStore,
    tasks: Sequence[CopyTask],
    bucket: TokenBucket | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> list[CopyResult]:
    """Copy `tasks` one after another in this thread; each result is the copy's outcome, the
    error it raised, or NOT_ATTEMPTED for tasks left out because `keep_going()` turned false
    or a store became unreachable (the next copies would only wait for it too)."""
    results: list[CopyResult] = []
    for task in tasks:
        if results and not keep_going():
            break
        try:
            results.append(copy_object(source, target, task, bucket))
        except Exception as exc:
            results.append(exc)
            if is_outage(exc):
                break
    results.extend(NOT_ATTEMPTED for _ in range(len(tasks) - len(results)))
    return results

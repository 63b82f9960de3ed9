"""The replication loop: journal -> ledger -> copies in threads or processes -> events -> done.

Durable steps, in this order, so a kill -9 anywhere loses and duplicates nothing: the ledger
records a pending entry (with the journal cursor, in one transaction); the target makes the
copy visible only once its SHA-256 checks out; the `object.replicated` event (id derived from
target, key and digest) is emitted; the ledger marks the entry done. A restart redoes pending
entries, checking the target first, and a repeated event is a no-op at the sink.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice, takewhile

from edgeloop.backoff import Backoff
from edgeloop.errors import ReplicationError
from edgeloop.journal.base import EventSink, Journal
from edgeloop.model.events import EventType
from edgeloop.replication.copier import (
    NOT_ATTEMPTED,
    CopyOutcome,
    CopyResult,
    copy_batch,
    is_outage,
)
from edgeloop.replication.ledger import Copied, Ledger, LedgerCounts, LedgerEntry
from edgeloop.replication.plan import (
    CopyTask,
    diff_listing,
    public_url,
    replicated_event,
    tasks_from_journal,
)
from edgeloop.replication.progress import ProgressReporter, SilentReporter, Snapshot
from edgeloop.replication.rate import TokenBucket
from edgeloop.replication.sinks import as_batch_sink
from edgeloop.replication.workers import CopyProcesses, CopyWorkerLost, local_pair
from edgeloop.store.base import ObjectStore, SyncDeferringStore
from edgeloop.store.local import LocalStore

log = logging.getLogger(__name__)

# Small objects go to a worker in groups (one hand-off between threads per group, not per
# object: for a 64 KiB object the hand-off costs as much as the copy). Each worker still
# copies one object at a time, so `transfers` copies run in parallel, as before.
GROUP_MAX_OBJECTS = 8
GROUP_MAX_BYTES = 2 * 1024 * 1024
# Fewer small copies than this go to threads: starting copy processes would cost more than
# they save (about 1 ms each forked, 70 ms started afresh).
PROCESS_MIN_OBJECTS = 64


@dataclass(frozen=True)
class ReplicationOptions:
    """Tuning of one replicator; the defaults suit an edge site on a modest link."""

    prefix: str = ""
    transfers: int = 4
    bwlimit: float | None = None
    """Bytes per second over all transfers together; None is unlimited."""
    anti_entropy_interval: float = 300.0
    """Seconds between listing passes in --follow mode; 0 turns them off."""
    max_backlog: int = 100_000
    """Most pending entries; when full, the journal and listing are not read further."""
    give_up_after: int = 10
    """Attempts per object (bad bytes, refused writes) before it is marked failed."""
    backoff: Backoff = field(default_factory=Backoff)
    outage_timeout: float = 300.0
    """In a single pass, how long to wait for an unreachable store before stopping."""
    batch_size: int = 256
    """Copies whose events and ledger updates are written in one transaction."""
    list_page: int = 1000
    poll_interval: float = 1.0
    processes: int | None = None
    """Copy processes for small objects between two directory stores (workers.py), started
    when a drain finds at least PROCESS_MIN_OBJECTS of them waiting: None starts one per
    transfer when the target fsyncs, else one per CPU up to `transfers`; 0 or 1 copies in
    threads. Large objects, other stores and a bandwidth limit copy in `transfers` threads."""


@dataclass(frozen=True)
class ReplicationStatus:
    """The durable state of one replication pair, as `edgeloop replicate status` shows it."""

    counts: LedgerCounts
    journal_cursor: int
    watermark: str | None
    last_full_pass: float | None
    failures: list[tuple[str, int, str]]

    @property
    def backlog(self) -> int:
        return self.counts.pending


class Replicator:
    """Copies objects under a prefix from one store to another, driven by the source journal
    when there is one and by listing passes (anti-entropy) otherwise."""

    def __init__(
        self,
        source: ObjectStore,
        target: ObjectStore,
        ledger: Ledger,
        sink: EventSink | Journal,
        *,
        source_journal: Journal | None = None,
        source_site: str = "",
        target_site: str = "",
        options: ReplicationOptions | None = None,
        reporter: ProgressReporter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.target = target
        # Copies go through a view that syncs directories once per batch, before the batch
        # is evented and marked done; stores without one make each put durable by itself.
        self._copy_target: ObjectStore = target
        self._sync_copies: Callable[[], None] = lambda: None
        if isinstance(target, SyncDeferringStore):
            view = target.deferring_sync()
            self._copy_target, self._sync_copies = view, view.sync
        self.ledger = ledger
        self.sink = as_batch_sink(sink)
        self.source_journal = source_journal
        self.source_site = source_site or source.url
        self.target_site = target_site or target.url
        self.options = options or ReplicationOptions()
        self.reporter = reporter or SilentReporter()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._bucket = TokenBucket(self.options.bwlimit) if self.options.bwlimit else None
        self._pool: ThreadPoolExecutor | None = None
        self._processes: CopyProcesses | None = None
        self._processes_closer: Callable[[], object] = lambda: None
        # Both stores when they are directories a copy process can open (else None).
        self._local_pair = local_pair(source, target) if self._bucket is None else None
        self._process_count = self._copy_processes_wanted()
        self._outage_since: float | None = None
        self._journal_waiting = False
        self._stop = threading.Event()
        self._reset_counters()
        ledger.recover()

    def _reset_counters(self) -> None:
        self._started = time.monotonic()
        self.copied = self.skipped = self.bytes = self.retries = self.failed = 0
        # A new run tries the stores afresh; its outage clock starts at its own first failure.
        self._outage_since = None
        self._outage_attempts = 0
        self._paused_until = 0.0

    # -- public ---------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Objects waiting on disk to be copied."""
        return self.ledger.backlog()

    @property
    def target_available(self) -> bool:
        return self._outage_since is None

    def snapshot(self) -> Snapshot:
        return Snapshot(
            copied=self.copied,
            skipped=self.skipped,
            bytes=self.bytes,
            retries=self.retries,
            failed=self.failed,
            backlog=self.backlog,
            target_available=self.target_available,
            elapsed=round(time.monotonic() - self._started, 3),
        )

    def status(self) -> ReplicationStatus:
        return read_status(self.ledger)

    def run_once(self, *, full: bool | None = None) -> Snapshot:
        """Replicate what is new and drain the backlog, then return.

        With a source journal only its new events are read (no listing) unless `full`;
        without one, a full listing pass is the only way to see what exists.
        """
        self._reset_counters()
        full = self.source_journal is None if full is None else full
        listing = full
        more = True  # whether another planning step may find more to copy
        if full:
            self.ledger.start_pass()

        def plan() -> None:
            nonlocal listing, more
            pulled, listing = self._plan(listing)
            more = bool(pulled or listing or self._journal_waiting)

        def plan_ahead() -> bool:
            # Called by drain while copies are in flight, so the next journal batch or listing
            # page is read while the workers copy the last one, not after.
            if not more or self._blocked():
                return False
            plan()
            return True

        while True:
            plan()
            self.drain(plan_ahead)
            if more and not self._blocked():
                continue
            if not self._wait_for_due() and not listing:
                break
        snapshot = self.snapshot()
        self.reporter.finish(snapshot)
        return snapshot

    def follow(self, stop: threading.Event) -> Snapshot:
        """Replicate continuously until `stop` is set: journal events as they come, a
        listing pass every `anti_entropy_interval` seconds, retries with backoff."""
        self._stop = stop
        more = False  # whether the last planning step found work or has more to list

        def plan() -> None:
            nonlocal more
            pulled, listing = self._plan(self._anti_entropy_due())
            more = bool(pulled or listing)

        def plan_ahead() -> bool:
            # As in run_once: the next journal batch or listing page is read while the
            # workers copy the last one.
            if not more or self._blocked() or stop.is_set():
                return False
            plan()
            return True

        while not stop.is_set():
            plan()
            self.drain(plan_ahead)
            self.reporter.status(self.snapshot())
            if more and not self._blocked():
                continue
            wake = self.ledger.next_due_time()
            now = time.time()
            delay = self.options.poll_interval
            if wake is not None:
                delay = min(delay, max(0.0, wake - now))
            if self._paused_until > now:
                delay = min(self.options.poll_interval, max(delay, self._paused_until - now))
            stop.wait(max(delay, 0.01))
        snapshot = self.snapshot()
        self.reporter.finish(snapshot)
        return snapshot

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._close_processes()

    def _close_processes(self) -> None:
        if self._processes is not None:
            self._processes_closer()  # closes them, once (also at garbage collection)
            self._processes = None

    def __enter__(self) -> Replicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- planning -------------------------------------------------------------------------
    def _plan(self, listing: bool) -> tuple[int, bool]:
        """Read the journal and, if `listing`, one page of the listing pass; an unreachable
        store pauses planning like it pauses copies. Returns (entries read, pass unfinished)."""
        if time.time() < self._paused_until:
            return 0, listing
        try:
            pulled = self.pull_journal()
            return pulled, listing and self.anti_entropy_step()
        except Exception as exc:
            if not is_outage(exc):
                raise
            self._note_outage(f"{type(exc).__name__}: {exc}")
            return 0, listing

    def _blocked(self) -> bool:
        """True when no more work can start now: the backlog is full or a store is away."""
        return self._room() == 0 or time.time() < self._paused_until

    def _room(self) -> int:
        return max(0, self.options.max_backlog - self.ledger.backlog())

    def pull_journal(self) -> int:
        """Move new `object.created` events of the source journal into the ledger, as far as
        the backlog bound allows; returns how many journal entries were read."""
        if self.source_journal is None:
            return 0
        read = 0
        self._journal_waiting = False
        while True:
            room = self._room()
            if room <= 0:
                self._journal_waiting = True  # more may wait in the journal: read it later
                break
            limit = min(self.options.list_page, room)
            entries = self.source_journal.read(
                self.ledger.journal_cursor, limit=limit, types=[EventType.OBJECT_CREATED]
            )
            if not entries:
                break
            tasks = tasks_from_journal(entries, self.options.prefix)
            self.ledger.enqueue(tasks, journal_cursor=entries[-1].seq)
            read += len(entries)
            if len(entries) < limit:
                break
        return read

    def _anti_entropy_due(self) -> bool:
        interval = self.options.anti_entropy_interval
        if interval <= 0:
            return False
        if self.ledger.watermark is not None:
            return True  # a pass is under way
        last = self.ledger.last_full_pass
        if last is None or time.time() - last >= interval:
            self.ledger.start_pass()
            return True
        return False

    def anti_entropy_step(self) -> bool:
        """List one page of the source after the watermark, diff it with the target's listing
        of the same key range and the ledger, queue what is missing; returns False when the
        pass is complete (or the backlog is full, to resume later)."""
        room = self._room()
        if room <= 0:
            return True  # resume once the backlog has drained
        prefix = self.options.prefix
        after = self.ledger.watermark or None
        size = min(self.options.list_page, room)
        page = list(islice(self.source.list(prefix, start_after=after), size))
        if not page:
            self.ledger.enqueue([], pass_done=True)
            return False
        last = page[-1].key
        there = list(
            takewhile(lambda i: i.key <= last, self.target.list(prefix, start_after=after))
        )
        tasks = diff_listing(page, there, self.ledger.records_between(after, last).get)
        done = len(page) < size
        self.ledger.enqueue(tasks, watermark=last, pass_done=done)
        return not done

    # -- copying --------------------------------------------------------------------------
    def _copy_processes_wanted(self) -> int:
        """How many copy processes this pair gets (0: copies run in threads)."""
        if self._local_pair is None:
            return 0
        wanted = self.options.processes
        if wanted is None:
            # A copy that fsyncs also waits on the disk: one process per transfer measured
            # best (4 against 3 or 2, docs/benchmarks.md). Without fsync copies are CPU work.
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
            fsyncs = self._local_pair[1].fsync
            wanted = self.options.transfers if fsyncs else min(self.options.transfers, cpus)
        return wanted if wanted > 1 else 0

    def _start_processes(self, waiting: Sequence[LedgerEntry]) -> None:
        """Start the copy processes when enough small copies wait in `waiting`.

        Called before the first copy of a drain starts, so usually while no copy thread
        exists yet and the processes can be forked.
        """
        if sum(e.size <= GROUP_MAX_BYTES for e in waiting) < PROCESS_MIN_OBJECTS:
            return
        if not self._process_count or self._processes is not None or self._local_pair is None:
            return
        view = self._copy_target  # a directory store's deferring view (see __init__)
        assert isinstance(view, LocalStore)
        try:
            # The workers' renames are synced by this view's sync(), once per batch.
            self._processes = CopyProcesses(
                *self._local_pair, self._process_count, note_unsynced=view.add_unsynced
            )
            # A replicator dropped without close() stops its processes when collected, not
            # only when this program exits.
            self._processes_closer = weakref.finalize(self, self._processes.close)
        except OSError as exc:  # no processes to be had (limits): threads still copy
            log.warning("cannot start copy processes (%s); copying in threads", exc)
            self._process_count = 0

    def _lose_processes(self, why: BaseException) -> None:
        """A copy process died (killed, out of memory): copy in threads from now on."""
        if self._processes is not None:
            log.warning("%s; copying in threads from now on", why)
            self._close_processes()
        self._process_count = 0

    def _submit(self, tasks: list[CopyTask]) -> Future[list[CopyResult]]:
        """Start copying one group: small objects in a copy process when there are any,
        a large object (a group of its own) in a thread, whose GIL is free while it hashes
        and writes megabytes at a time."""
        if self._processes is not None and sum(t.size for t in tasks) <= GROUP_MAX_BYTES:
            try:
                return self._processes.submit(tasks)
            except CopyWorkerLost as exc:
                self._lose_processes(exc)
        return self._executor().submit(
            copy_batch, self.source, self._copy_target, tasks, self._bucket, self._may_start_copies
        )

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.options.transfers, thread_name_prefix="edgeloop-replicate"
            )
        return self._pool

    def drain(self, plan_ahead: Callable[[], bool] | None = None) -> None:
        """Copy every entry that is due now, `transfers` at a time, until none is left or the
        target is unreachable (then the backlog waits on disk).

        `plan_ahead`, when given, is called as the queue runs low to queue more entries (it
        returns False when it did nothing), so planning overlaps with the copies in flight.
        """
        workers = max(self._process_count, self.options.transfers)
        # Groups in flight: a copy thread runs one and has one queued. A copy process also
        # commits one while it copies the next, and needs more queued in its pipe to go on
        # while this thread flushes a batch (directory syncs, events, ledger): with two per
        # process it ran dry (4 per process: about a fifth faster for 2,000 small objects,
        # docs/benchmarks.md).
        window = workers * (4 if self._process_count else 2)
        # Refill below this many queued entries: deep enough to keep the workers busy while
        # the next page is planned.
        low_water = max(window * GROUP_MAX_OBJECTS, self.options.list_page // 2)
        completions: queue.SimpleQueue[Future[list[CopyResult]]] = queue.SimpleQueue()
        inflight: dict[Future[list[CopyResult]], list[LedgerEntry]] = {}
        waiting: deque[LedgerEntry] = deque()
        # Keys queued, in flight, or copied but not yet flushed: still pending in the ledger.
        claimed: set[str] = set()
        finished: list[CopyOutcome] = []
        fetch = True
        may_start_processes = self._processes is None and self._process_count > 0
        last_flush = time.monotonic()
        while True:
            # On stop, start nothing new: in-flight copies finish and are flushed.
            if time.time() >= self._paused_until and not self._stop.is_set():
                if len(waiting) < low_water:
                    if not fetch and plan_ahead is not None and plan_ahead():
                        fetch = True  # the plan may have queued entries
                    if fetch:
                        fresh = self.ledger.due(self.options.list_page, exclude=claimed)
                        fetch = bool(fresh)  # nothing new until a flush or plan changes it
                        waiting.extend(fresh)
                        claimed.update(e.key for e in fresh)
                if may_start_processes and waiting:
                    may_start_processes = False  # one look per drain, at its first entries
                    self._start_processes(waiting)
                while waiting and len(inflight) < window:
                    group = _next_group(waiting)
                    future = self._submit([entry.task() for entry in group])
                    future.add_done_callback(completions.put)
                    inflight[future] = group
            if not inflight:
                break
            try:
                done = [completions.get(timeout=0.5)]
            except queue.Empty:
                continue
            while not completions.empty():
                done.append(completions.get_nowait())
            for future in done:
                group = inflight.pop(future)
                error = future.exception()
                results: Sequence[CopyResult | BaseException]
                if isinstance(error, CopyWorkerLost):  # not these copies' fault: not attempted
                    self._lose_processes(error)
                    results = [NOT_ATTEMPTED] * len(group)
                else:
                    results = future.result() if error is None else [error] * len(group)
                for entry, result in zip(group, results, strict=True):
                    if isinstance(result, CopyOutcome):
                        finished.append(result)
                        self._outage_over()
                        continue
                    claimed.discard(entry.key)
                    if result is not NOT_ATTEMPTED:
                        self._failed(entry, result)
            now = time.monotonic()
            if len(finished) >= self.options.batch_size or (finished and now - last_flush > 0.5):
                self._flush(finished)
                claimed.difference_update(o.key for o in finished)
                finished = []
                fetch = True
                last_flush = now
                self.reporter.status(self.snapshot())
        self._flush(finished)

    def _may_start_copies(self) -> bool:
        """Whether a worker may start the next copy of its group (no stop, no outage)."""
        return not self._stop.is_set() and time.time() >= self._paused_until

    def _flush(self, outcomes: list[CopyOutcome]) -> None:
        """Make verified copies durable, emit their events, then mark them done (in that
        order)."""
        if not outcomes:
            return
        self._sync_copies()
        copies = [o for o in outcomes if not o.gone and o.sha256 is not None]
        events = [
            replicated_event(
                o.key,
                o.size,
                o.sha256,
                target_site=self.target_site,
                source_site=self.source_site,
                source_url=self.source.url,
            )
            for o in copies
            if o.sha256 is not None
        ]
        if events:
            self.sink.emit_many(events)
        self.ledger.mark_done(
            [Copied(o.key, o.sha256, o.size, o.expected_sha256) for o in copies if o.sha256]
        )
        gone = [o.key for o in outcomes if o.gone]
        if gone:
            self.ledger.mark_gone(gone)
        for o in copies:
            if o.skipped:
                self.skipped += 1
            else:
                self.copied += 1
                self.bytes += o.size
            self.reporter.copied(o.key, o.size, o.skipped)

    def _failed(self, entry: LedgerEntry, error: BaseException) -> None:
        self.retries += 1
        message = f"{type(error).__name__}: {error}"
        if is_outage(error):
            # The whole target (or source) is away: pause every transfer, keep the entry
            # pending without counting it against the object.
            self._note_outage(message)
            return
        if not isinstance(error, Exception):
            raise error
        delay = self.options.backoff.delay(entry.attempts, self._rng)
        gave_up = self.ledger.mark_retry(
            entry.key,
            message,
            next_attempt=time.time() + delay,
            give_up_after=self.options.give_up_after,
        )
        if gave_up:
            self.failed += 1
            log.error(
                "giving up on %s after %d attempts: %s", entry.key, entry.attempts + 1, message
            )
        else:
            self.reporter.retrying(entry.key, message, delay)

    def _note_outage(self, message: str) -> None:
        now = time.time()
        if self._outage_since is None:
            self._outage_since = now
        if now >= self._paused_until:
            delay = self.options.backoff.delay(self._outage_attempts, self._rng)
            self._outage_attempts += 1
            self._paused_until = now + delay
            self.reporter.retrying(None, message, delay)
            log.warning("store unavailable, retrying in %.1fs: %s", delay, message)

    def _outage_over(self) -> None:
        if self._outage_since is not None:
            log.info("store reachable again after %.1fs", time.time() - self._outage_since)
        self._outage_since = None
        self._outage_attempts = 0
        self._paused_until = 0.0

    def _wait_for_due(self, sleep: Callable[[float], None] = time.sleep) -> bool:
        """In a single pass: sleep until the next retry is due or a pause ends; False when
        nothing is left to wait for. Raises when an outage outlasts `outage_timeout`."""
        now = time.time()
        if (
            self._outage_since is not None
            and now - self._outage_since > self.options.outage_timeout
        ):
            raise ReplicationError(
                f"the target {public_url(self.target.url)} (or the source) stayed unreachable "
                f"for over {self.options.outage_timeout:g}s; {self.backlog} objects wait in "
                "the backlog on disk and the next run copies them"
            )
        wake = self.ledger.next_due_time()
        if wake is None and self._paused_until <= now:
            return False
        self.reporter.status(self.snapshot())
        sleep(max(0.0, max(wake or 0.0, self._paused_until) - now))
        return True


def _next_group(waiting: deque[LedgerEntry]) -> list[LedgerEntry]:
    """Take the next group of entries to copy in one worker: one large object, or small ones
    up to GROUP_MAX_OBJECTS and GROUP_MAX_BYTES together."""
    group = [waiting.popleft()]
    size = group[0].size
    while waiting and len(group) < GROUP_MAX_OBJECTS and size + waiting[0].size <= GROUP_MAX_BYTES:
        entry = waiting.popleft()
        group.append(entry)
        size += entry.size
    return group


def read_status(ledger: Ledger) -> ReplicationStatus:
    """The status of a pair from its ledger alone (no store is contacted)."""
    return ReplicationStatus(
        counts=ledger.counts(),
        journal_cursor=ledger.journal_cursor,
        watermark=ledger.watermark,
        last_full_pass=ledger.last_full_pass,
        failures=ledger.failures(),
    )

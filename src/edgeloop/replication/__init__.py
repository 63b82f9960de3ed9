"""Replication: copy objects between stores, verified by SHA-256, resumable, evented.

Driven by the source journal (cost grows with the changes, not the bucket) with periodic
listing passes for objects written by anyone else; see docs/replication.md.
"""

from __future__ import annotations

from edgeloop.backoff import Backoff
from edgeloop.replication.ledger import Ledger
from edgeloop.replication.progress import (
    JsonReporter,
    LineReporter,
    ProgressReporter,
    RichReporter,
    SilentReporter,
    Snapshot,
)
from edgeloop.replication.rate import parse_rate
from edgeloop.replication.replicator import (
    ReplicationOptions,
    ReplicationStatus,
    Replicator,
    read_status,
)
from edgeloop.replication.rules import (
    default_state_dir,
    find_rule,
    replicator_for_rule,
    replicator_for_urls,
)
from edgeloop.replication.sinks import BatchEventSink, JournalBatchSink, MemorySink

__all__ = [
    "Backoff",
    "BatchEventSink",
    "JournalBatchSink",
    "JsonReporter",
    "Ledger",
    "LineReporter",
    "MemorySink",
    "ProgressReporter",
    "ReplicationOptions",
    "ReplicationStatus",
    "Replicator",
    "RichReporter",
    "SilentReporter",
    "Snapshot",
    "default_state_dir",
    "find_rule",
    "parse_rate",
    "read_status",
    "replicator_for_rule",
    "replicator_for_urls",
]

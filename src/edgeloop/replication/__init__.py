"""Replication: copy objects between stores, verified by SHA-256, resumable, evented.

Driven by the source journal (cost grows with the changes, not the bucket) with periodic
listing passes for objects written by anyone else; see docs/replication.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# The names are imported on first use (PEP 562): a copy process (workers.py) imports this
# package for the copier alone and starts faster without the replicator, ledger and reporters.
_LAZY = {
    "Backoff": "edgeloop.backoff",
    "BatchEventSink": "edgeloop.replication.sinks",
    "JournalBatchSink": "edgeloop.replication.sinks",
    "JsonReporter": "edgeloop.replication.progress",
    "Ledger": "edgeloop.replication.ledger",
    "LineReporter": "edgeloop.replication.progress",
    "MemorySink": "edgeloop.replication.sinks",
    "ProgressReporter": "edgeloop.replication.progress",
    "ReplicationOptions": "edgeloop.replication.replicator",
    "ReplicationStatus": "edgeloop.replication.replicator",
    "Replicator": "edgeloop.replication.replicator",
    "RichReporter": "edgeloop.replication.progress",
    "SilentReporter": "edgeloop.replication.progress",
    "Snapshot": "edgeloop.replication.progress",
    "default_state_dir": "edgeloop.replication.rules",
    "find_rule": "edgeloop.replication.rules",
    "parse_rate": "edgeloop.replication.rate",
    "read_status": "edgeloop.replication.replicator",
    "replicator_for_rule": "edgeloop.replication.rules",
    "replicator_for_urls": "edgeloop.replication.rules",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""What the demo verifies at the end: every capture record the edges acknowledged is at the
core exactly once, and what the newest model version was trained on."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

import pyarrow.parquet as pq

from edgeloop.demo.scenario import MODEL
from edgeloop.store.base import ObjectStore


@dataclass(frozen=True)
class CaptureCheck:
    """Per site: requests answered 200 (all captured: sample rate 1), records found at the core,
    answered requests missing there, and request ids found more than once."""

    site: str
    answered: int
    at_core: int
    missing: int
    duplicates: int

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicates == 0


def request_ids_at(store: ObjectStore, site: str, root: str = "captures") -> Counter[str]:
    """How often each request id occurs in `site`'s batches in `store` (the history left out)."""
    found: Counter[str] = Counter()
    for info in store.list(f"{root}/{MODEL}/{site}/"):
        if not info.key.endswith(".parquet") or info.key.endswith("/history.parquet"):
            continue
        table = pq.read_table(io.BytesIO(store.get(info.key).read()), columns=["request_id"])
        found.update(table["request_id"].to_pylist())
    return found


def check_captures(store: ObjectStore, site: str, answered_ids: list[str]) -> CaptureCheck:
    found = request_ids_at(store, site)
    missing = sum(1 for rid in set(answered_ids) if rid not in found)
    duplicates = sum(1 for count in found.values() if count > 1)
    return CaptureCheck(site, len(answered_ids), sum(found.values()), missing, duplicates)

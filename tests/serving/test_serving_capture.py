"""Capture: spool to disk, Parquet batches in the store, nothing acknowledged lost or doubled."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from edgeloop.errors import StoreUnavailable
from edgeloop.serving.capture import (
    CaptureConfig,
    CaptureWriter,
    FullPolicy,
    UploaderCommand,
    upload_segment,
)
from edgeloop.serving.metrics import ServingMetrics
from edgeloop.serving.priority import BACKGROUND_NICE
from edgeloop.serving.spool import Spool
from edgeloop.store import LocalStore, MemoryStore, ObjectStore
from edgeloop.testing.serving import capture_record, wait_for

T0 = 1_790_000_000.0  # 2026-09-21 UTC


def _record(i: int, model: str = "demo", t: float = T0) -> dict[str, Any]:
    return capture_record(i, t, model=model)


def _rows(store: ObjectStore, prefix: str = "") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for info in store.list(prefix):
        with store.get(info.key) as reader:
            rows.extend(pq.read_table(io.BytesIO(reader.read())).to_pylist())
    return rows


def _config(tmp_path: Path, **overrides: Any) -> CaptureConfig:
    values: dict[str, Any] = {
        "spool_dir": tmp_path / "spool",
        "site": "shop-1",
        "batch_seconds": 0.1,
        "retry_seconds": 0.05,
    }
    values.update(overrides)
    return CaptureConfig(**values)


def test_records_arrive_as_parquet_under_captures_and_labels(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    writer = CaptureWriter(_config(tmp_path), store, ServingMetrics())
    for i in range(10):
        assert writer.offer(_record(i))
    writer.offer({"kind": "label", "request_id": "r3", "model": "demo", "label": 1, "time": T0})
    wait_for(lambda: len(_rows(store, "captures/")) == 10 and _rows(store, "labels/"))
    writer.close()
    keys = [info.key for info in store.list("")]
    assert all(
        k.startswith(("captures/demo/shop-1/2026/09/21/", "labels/demo/shop-1/2026/09/21/"))
        and k.endswith(".parquet")
        for k in keys
    )
    rows = sorted(_rows(store, "captures/"), key=lambda r: int(r["request_id"][1:]))
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(10)]
    assert rows[4]["version"] == "2" and rows[4]["site"] == "shop-1"
    assert '"data":[4.0,4.5]' in rows[4]["inputs"]
    labels = _rows(store, "labels/")
    assert labels[0]["request_id"] == "r3" and labels[0]["label"] == "1"


def test_crash_after_upload_before_delete_writes_the_same_key_and_bytes(tmp_path: Path) -> None:
    store = MemoryStore()
    spool = Spool(tmp_path / "spool")
    spool.append(
        [b'{"request_id":"a","time":%d,"model":"m","version":1,"inputs":[],"outputs":[]}\n' % T0]
    )
    spool.sync()
    segment = spool.seal()
    assert segment is not None
    upload_segment(segment, store, "s")  # then the process dies before deleting the segment
    first = {i.key: i.sha256 for i in store.list("")}
    spool.close()
    writer = CaptureWriter(_config(tmp_path, site="s"), store, ServingMetrics())
    wait_for(lambda: not writer.spool.sealed())
    writer.close()
    assert {i.key: i.sha256 for i in store.list("")} == first
    assert [r["request_id"] for r in _rows(store)] == ["a"]


def test_torn_last_line_of_a_crashed_segment_is_cut(tmp_path: Path) -> None:
    slot = tmp_path / "spool" / "w0"
    slot.mkdir(parents=True)
    good = b'{"request_id":"ok","time":%d,"model":"m","version":1,"inputs":[],"outputs":[]}\n' % T0
    (slot / "0000000001-dead-00000001.open").write_bytes(good + b'{"request_id":"to')
    store = MemoryStore()
    writer = CaptureWriter(_config(tmp_path), store, ServingMetrics())
    wait_for(lambda: _rows(store))
    writer.close()
    assert [r["request_id"] for r in _rows(store)] == ["ok"]


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    metrics = ServingMetrics()
    writer = CaptureWriter(_config(tmp_path, queue_size=3), MemoryStore(), metrics, start=False)
    accepted = [writer.offer(_record(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert metrics.dropped.labels("queue_full")._value.get() == 2
    writer.start()
    writer.close()


@pytest.mark.parametrize("policy", [FullPolicy.DROP_NEW, FullPolicy.DROP_OLDEST])
def test_full_spool_follows_its_policy_and_counts(tmp_path: Path, policy: FullPolicy) -> None:
    metrics = ServingMetrics()

    class DownStore(MemoryStore):
        def put(self, key: str, data: Any, *, expected_sha256: str | None = None) -> Any:
            raise StoreUnavailable("store is down")

    config = _config(
        tmp_path, max_spool_bytes=2048, full_policy=policy, batch_records=2, sync_every=1
    )
    writer = CaptureWriter(config, DownStore(), metrics)
    for i in range(60):
        writer.offer(_record(i))
    wait_for(lambda: writer.queue.empty())
    time.sleep(0.2)
    writer.close(upload_timeout=0.1)
    dropped = sum(
        metrics.dropped.labels(reason)._value.get()
        for reason in ("spool_full", "spool_full_oldest")
    )
    assert dropped > 0
    assert writer.spool.size_bytes() <= 2048
    assert metrics.captured._value.get() + (metrics.dropped.labels("spool_full")._value.get()) == 60


def test_store_outage_keeps_segments_then_drains(tmp_path: Path) -> None:
    class FlakyStore(MemoryStore):
        up = False

        def put(self, key: str, data: Any, *, expected_sha256: str | None = None) -> Any:
            if not self.up:
                raise StoreUnavailable("store is down")
            return super().put(key, data, expected_sha256=expected_sha256)

    store = FlakyStore()
    metrics = ServingMetrics()
    writer = CaptureWriter(_config(tmp_path), store, metrics)
    for i in range(5):
        writer.offer(_record(i))
    wait_for(lambda: metrics.upload_errors._value.get() > 0)
    assert writer.spool.sealed()
    store.up = True
    wait_for(lambda: len(_rows(store)) == 5)
    writer.close()
    assert sorted(r["request_id"] for r in _rows(store)) == [f"r{i}" for i in range(5)]


class PriorityStore(MemoryStore):
    """A store that notes the nice value of the thread writing each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.nice: list[int] = []

    def put(self, key: str, data: Any, **kwargs: Any) -> Any:
        self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return super().put(key, data, **kwargs)


def test_the_uploader_runs_at_background_priority_and_requests_do_not(tmp_path: Path) -> None:
    store = PriorityStore()
    writer = CaptureWriter(_config(tmp_path), store, ServingMetrics())
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert writer.offer(_record(1))
    wait_for(lambda: store.nice)
    writer.close()
    assert store.nice[0] == BACKGROUND_NICE
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # caller's own
    assert _rows(store)[0]["request_id"] == "r1"


def test_a_record_that_cannot_be_encoded_is_dropped_and_counted(tmp_path: Path) -> None:
    metrics = ServingMetrics()
    writer = CaptureWriter(_config(tmp_path), MemoryStore(), metrics, start=False)
    assert not writer.offer({**_record(1), "latency_ms": object()})
    assert writer.queue.empty()
    assert metrics.dropped.labels("unserializable")._value.get() == 1


def test_an_uploader_process_uploads_journals_and_is_replaced_when_it_dies(
    tmp_path: Path,
) -> None:
    from edgeloop.journal import SQLiteJournal
    from edgeloop.model.events import EventType

    store = LocalStore(tmp_path / "store")
    journal = tmp_path / "journal.db"
    metrics = ServingMetrics()
    command = UploaderCommand(store.url, "shop-1", str(journal), retry_seconds=0.1)
    writer = CaptureWriter(_config(tmp_path), command, metrics)
    assert writer._process is not None and writer._process.pid != os.getpid()
    for i in range(5):
        assert writer.offer(_record(i))
    wait_for(lambda: len(_rows(store, "captures/")) == 5)
    first = writer._process
    first.kill()  # the next sealed segment starts another uploader
    first.wait()
    for i in range(5, 10):
        assert writer.offer(_record(i))
    wait_for(lambda: len(_rows(store, "captures/")) == 10)
    assert writer._process is not first
    writer.close()
    assert writer._process is None  # stopped with the writer
    assert sorted(int(r["request_id"][1:]) for r in _rows(store, "captures/")) == list(range(10))
    assert metrics.uploaded._value.get() >= 5  # reported back by the processes
    events = SQLiteJournal(journal).read(0, types=[EventType.OBJECT_CREATED])
    assert {e.event.subject for e in events} == {info.key for info in store.list("captures/")}


def test_an_uploader_process_that_keeps_dying_is_restarted_after_growing_delays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from edgeloop.serving.capture import UPLOADER_RESTART_CAP

    caplog.set_level(logging.WARNING, logger="edgeloop.serving.capture")

    def delays() -> list[float]:
        return [float(r.args[1]) for r in caplog.records  # type: ignore[index]
                if "uploader process exited" in r.getMessage()]  # fmt: skip

    # A store URL the uploader cannot open: every process it starts exits at once.
    command = UploaderCommand("ftp://nowhere/x", "shop-1")
    writer = CaptureWriter(_config(tmp_path, retry_seconds=0.1), command, ServingMetrics())
    try:
        wait_for(lambda: len(delays()) >= 4, timeout=60)
        assert writer.offer(_record(1))  # requests still get their records spooled
    finally:
        writer.close()
    for attempt, delay in enumerate(delays()[:4]):
        bound = min(UPLOADER_RESTART_CAP, 0.1 * 2**attempt)
        assert bound / 2 <= delay <= bound  # doubling, jittered in [half, all] of the bound
    assert writer.spool.sealed() or writer.spool.size_bytes() > 0  # kept for a later start


def test_captures_go_to_an_uploader_process_unless_the_store_lives_in_memory(
    tmp_path: Path,
) -> None:
    from edgeloop.errors import InvalidKeyError
    from edgeloop.serving.config import ServeConfig
    from edgeloop.serving.runner import capture_target

    def target(url: str | None) -> object:
        return capture_target(ServeConfig(state_dir=tmp_path, capture_to=url, site="s"))

    assert target(None) is None
    assert target(f"file://{tmp_path}/store") == UploaderCommand(
        f"file://{tmp_path}/store", "s", defer_seconds=60.0, defer_bytes=1024**3 // 2
    )
    assert isinstance(target("memory://captures"), MemoryStore)  # only this process has it
    with pytest.raises(InvalidKeyError):
        target("ftp://nowhere/x")  # refused at start, not by a process retrying forever

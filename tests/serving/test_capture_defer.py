"""Capture uploads wait while the serving CPUs are busy: the load measure, the rule, and the
real uploader process holding back, giving in to age or size, and uploading at stop."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from edgeloop.serving.capture import CaptureConfig, CaptureWriter, UploaderCommand
from edgeloop.serving.cpuload import CpuLoad, cpu_ticks
from edgeloop.serving.metrics import ServingMetrics
from edgeloop.serving.uploader import upload_waits
from edgeloop.store import LocalStore
from edgeloop.testing.serving import capture_record, wait_for

STAT = """cpu  100 0 50 800 50 0 0 0 0 0
cpu0 10 1 20 300 10 2 3 4 0 0
cpu1 90 0 30 500 40 0 0 0 0 0
intr 12345
"""


def test_cpu_ticks_sum_the_wanted_cpus_and_leave_idle_and_iowait_out() -> None:
    assert cpu_ticks(STAT, [0]) == (40, 350)  # user nice system irq softirq steal; + idle iowait
    assert cpu_ticks(STAT, [0, 1]) == (160, 1010)
    assert cpu_ticks(STAT, [7]) == (0, 0)  # a CPU the kernel does not list


def _stat(path: Path, busy: int, idle: int) -> None:
    lines = [
        f"cpu{n} {busy} 0 0 {idle} 0 0 0 0 0 0" for n in range(max(os.sched_getaffinity(0)) + 1)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_the_busy_share_is_measured_between_answers(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _stat(stat, busy=1_000, idle=1_000)
    load = CpuLoad(stat)
    _stat(stat, busy=1_000 + 90_000, idle=1_000 + 10_000)  # 90% busy since
    first = load.busy_fraction()
    assert first is not None and first == pytest.approx(0.9, abs=0.01)
    assert load.busy_fraction() == first  # no time has passed: the last answer stands
    _stat(stat, busy=91_000 + 10_000, idle=11_000 + 90_000)
    assert load.busy_fraction() == pytest.approx(0.1, abs=0.01)
    assert CpuLoad(tmp_path / "missing").busy_fraction() is None


@pytest.mark.parametrize(
    ("busy", "age", "size", "waits"),
    [
        (0.95, 1.0, 10, True),  # busy, young, small: wait
        (0.5, 1.0, 10, False),  # not busy
        (0.95, 61.0, 10, False),  # waited long enough
        (0.95, 1.0, 1_000, False),  # the spool is filling up
        (None, 1.0, 10, False),  # load unknown (not Linux)
        (0.95, None, 10, False),  # nothing sealed
    ],
)
def test_uploads_wait_only_while_busy_young_and_small(
    busy: float | None, age: float | None, size: int, waits: bool
) -> None:
    rule = {"busy_above": 0.9, "defer_seconds": 60.0, "defer_bytes": 1_000}
    assert upload_waits(busy, age, size, **rule) is waits
    assert upload_waits(busy, age, size, **{**rule, "defer_seconds": 0}) is False  # turned off


def _rows(store: LocalStore) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for info in store.list("captures/"):
        with store.get(info.key) as reader:
            rows.extend(pq.read_table(io.BytesIO(reader.read())).to_pylist())
    return rows


def _writer(tmp_path: Path, **defer: Any) -> tuple[CaptureWriter, LocalStore, ServingMetrics]:
    store = LocalStore(tmp_path / "store")
    metrics = ServingMetrics()
    # busy_above=-1: any load counts as busy, so the test does not depend on the machine's.
    command = UploaderCommand(store.url, "shop-1", busy_above=-1.0, **defer)
    config = CaptureConfig(spool_dir=tmp_path / "spool", site="shop-1", batch_seconds=0.05)
    return CaptureWriter(config, command, metrics), store, metrics


def test_a_busy_machine_holds_uploads_back_until_the_server_stops(tmp_path: Path) -> None:
    writer, store, metrics = _writer(tmp_path, defer_seconds=3600, defer_bytes=1 << 40)
    try:
        for i in range(5):
            assert writer.offer(capture_record(i, 1_790_000_000.0))
        wait_for(lambda: writer.uploads_deferred)
        assert metrics.uploads_deferred._value.get() == 1
        wait_for(lambda: writer.spool.sealed())  # sealed, and still not uploaded
        assert _rows(store) == []
    finally:
        writer.close()  # end of input: the last pass uploads whatever the load
    assert sorted(r["request_id"] for r in _rows(store)) == [f"r{i}" for i in range(5)]


@pytest.mark.parametrize(
    "defer",
    [{"defer_seconds": 0.3, "defer_bytes": 1 << 40}, {"defer_seconds": 3600, "defer_bytes": 1}],
)
def test_a_busy_machine_still_uploads_a_batch_that_waited_long_or_a_spool_that_grew(
    tmp_path: Path, defer: dict[str, Any]
) -> None:
    writer, store, _ = _writer(tmp_path, **defer)
    try:
        for i in range(3):
            assert writer.offer(capture_record(i, 1_790_000_000.0))
        wait_for(lambda: len(_rows(store)) == 3)  # before any stop
    finally:
        writer.close()

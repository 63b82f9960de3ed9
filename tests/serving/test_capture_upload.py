"""The uploader's column-wise parse gives the same Parquet rows as parsing record by record;
labels, records of other shapes and damaged lines in the same segment are still handled."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.serving.capture import (
    CaptureWriter,
    _columnar_tables,
    _plain_column,
    _record_tables,
    parse_spool_line,
    spool_line,
    upload_segment,
)
from edgeloop.serving.oip import encode_spool_tensors, encode_tensors, plain_tensors
from edgeloop.store import MemoryStore
from edgeloop.testing.serving import capture_record

T0 = 1_790_000_000.0  # 2026-09-21 UTC
DAY = 86_400.0


def _capture(i: int, t: float, model: str = "demo", encoded: bool = True) -> dict[str, Any]:
    outputs = {"label": np.array([i % 2]), "p": np.array([[0.25, 0.75]], dtype=np.float32)}
    return capture_record(
        i, t, model=model, version=3, latency_ms=0.75 + i,
        outputs=encode_tensors(outputs) if encoded else outputs,
    )  # fmt: skip


def _rows(store: MemoryStore) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for info in store.list(""):
        with store.get(info.key) as reader:
            out[info.key] = pq.read_table(io.BytesIO(reader.read())).to_pylist()
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 3 * DAY, allow_nan=False),
            st.sampled_from(["demo", "churn"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([T0, DAY * 0.75, -DAY * 400.5]),  # a clock set before 1970 as well
)
def test_column_wise_and_record_by_record_give_the_same_rows(
    drawn: list[tuple[float, str, bool]], start: float
) -> None:
    lines = [
        spool_line(_capture(i, start + dt, model, enc)) for i, (dt, model, enc) in enumerate(drawn)
    ]
    columnar, count = _columnar_tables(b"".join(lines), "shop", "b1")
    by_record, same = _record_tables(lines, "shop", "b1", None)
    assert count == same == len(lines)
    assert sorted(columnar) == sorted(by_record)
    for key, table in columnar.items():
        assert table.to_pylist() == by_record[key].to_pylist(), key


def test_a_mixed_segment_keeps_labels_and_skips_damaged_lines(tmp_path: Path) -> None:
    label = spool_line(
        {"kind": "label", "request_id": "r1", "model": "demo", "label": 1, "time": T0}
    )
    lines = [
        spool_line(_capture(1, T0)),
        label,
        b"not json\tat all\n",  # two fields: neither a capture nor a label
        spool_line(_capture(2, T0 + DAY)),  # the next day: its own batch
        spool_line(_capture(3, T0, model="churn")),
    ]
    segment = tmp_path / "0000000001-abcd-00000001.seg"
    segment.write_bytes(b"".join(lines))
    store = MemoryStore()
    assert upload_segment(segment, store, "shop") == 4
    rows = _rows(store)
    prefix = "0000000001-abcd-00000001.parquet"
    assert sorted(rows) == [
        f"captures/churn/shop/2026/09/21/{prefix}",
        f"captures/demo/shop/2026/09/21/{prefix}",
        f"captures/demo/shop/2026/09/22/{prefix}",
        f"labels/demo/shop/2026/09/21/{prefix}",
    ]
    assert [r["request_id"] for r in rows[f"captures/demo/shop/2026/09/21/{prefix}"]] == ["r1"]
    assert rows[f"labels/demo/shop/2026/09/21/{prefix}"][0]["label"] == "1"


def test_a_line_pyarrow_cannot_parse_falls_back_to_record_by_record(tmp_path: Path) -> None:
    good = spool_line(_capture(1, T0))
    broken = b'{"request_id": "r9", "time": "soon"\t[]\t[]\n'  # three fields, meta not JSON
    segment = tmp_path / "0000000001-abcd-00000002.seg"
    segment.write_bytes(good + broken + spool_line(_capture(2, T0)))
    store = MemoryStore()
    assert upload_segment(segment, store, "shop") == 2
    (rows,) = _rows(store).values()
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["version"] == "3" and rows[0]["latency_ms"] == 1.75
    assert '"data":[1.0,1.5]' in rows[0]["inputs"] and '"name":"p"' in rows[0]["outputs"]


class _Queue:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def offer(self, line: bytes) -> bool:
        self.lines.append(line)
        return True


def test_the_request_paths_line_is_the_records_line() -> None:
    # offer_inference builds the spool line without a record dict; it must say what
    # spool_line says of the same record (time aside: offer_inference reads the clock).
    record = _capture(4, T0)
    writer = CaptureWriter.__new__(CaptureWriter)  # only the queue is used on this path
    writer.queue = _Queue()  # type: ignore[assignment]
    assert writer.offer_inference(
        "r4", "demo", 3, record["inputs"], record["outputs"], record["latency_ms"]
    )
    (line,) = writer.queue.lines  # type: ignore[attr-defined]
    fast, slow = parse_spool_line(line), parse_spool_line(spool_line(record))
    assert fast.pop("time") > 0 and slow.pop("time") == T0
    assert fast == slow
    assert fast["inputs"] == '[{"name":"input","datatype":"FP32","shape":[1,2],"data":[4.0,4.5]}]'


_SPOOL_ROWS = st.sampled_from([
    {"input": np.array([[0.5, -1.25, 3e-8]], dtype=np.float32)},
    {"input": np.array([[7.0, 8.0]], dtype=np.float32)},  # another shape: another head
    {"other": np.array([[1.0, np.nan, np.inf]], dtype=np.float64)},
    {"input": np.array([[1, 2, 3]], dtype=np.int64), "flag": np.array([True])},  # two tensors
    {"input": np.array([[0.1, 0.2]], dtype=np.float16)},
    {"ok": np.array([True, False])},
    {"input": np.zeros((0, 3), dtype=np.float32)},
    {"words": np.array(["a", "b"], dtype=object)},
])  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(_SPOOL_ROWS, min_size=1, max_size=30), st.booleans())
def test_a_tensor_column_is_printed_as_each_row_would_be(
    rows: list[dict[str, np.ndarray]], old_json: bool
) -> None:
    # The uploader prints a column's binary tensors a head at a time; every row must read
    # exactly as plain_tensors makes it alone, whatever mix of heads, datatypes and tensor
    # counts the column holds (and rows spooled as JSON by an older server are kept).
    texts = [
        (encode_tensors(row) if old_json and i % 2 else encode_spool_tensors(row)).decode()
        for i, row in enumerate(rows)
    ]
    printed = _plain_column(pa.chunked_array([pa.array(texts, pa.string())]))
    assert printed.to_pylist() == [plain_tensors(text) for text in texts]
    assert printed.to_pylist() == [encode_tensors(row).decode() for row in rows]


def test_a_damaged_binary_tensor_in_a_column_is_refused() -> None:
    good = encode_spool_tensors({"input": np.array([[0.5, 1.5]], dtype=np.float32)}).decode()
    for damaged in [
        good.replace('"data":"', '"data":"AAAA'),
        good[:-5] + '"}]',
        good[:-1],
        good.replace('"name":"input",', ""),  # a head without its name
    ]:
        column = pa.chunked_array([pa.array([good, damaged, good], pa.string())])
        with pytest.raises(ValueError):
            _plain_column(column)


def test_lines_that_parse_but_cannot_be_stored_are_skipped_not_retried(tmp_path: Path) -> None:
    # Each of these once raised past the fallbacks (KeyError, OverflowError, a key the store
    # refuses) and failed the whole segment's upload, which the uploader retries forever.
    good = spool_line(_capture(1, T0))
    meta, rest = good.split(b"\t", 1)
    poison = [
        spool_line({**_capture(2, T0), "model": "../escape"}),
        spool_line({k: v for k, v in _capture(3, T0).items() if k != "model"}),
        spool_line(_capture(4, 1e300)),  # no datetime holds it
        spool_line({k: v for k, v in _capture(5, T0).items() if k != "request_id"}),
        meta + b"\t" + rest.replace(b'"name":"input",', b""),  # a binary tensor with no name
        spool_line({**_capture(6, T0), "latency_ms": "slow"}),
    ]
    segment = tmp_path / "0000000001-abcd-00000003.seg"
    segment.write_bytes(good + b"".join(poison) + spool_line(_capture(7, T0)))
    store = MemoryStore()
    assert upload_segment(segment, store, "shop") == 2
    (rows,) = _rows(store).values()
    assert [r["request_id"] for r in rows] == ["r1", "r7"]

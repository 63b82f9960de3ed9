"""The uploader's column-wise parse gives the same Parquet rows as parsing record by record;
labels, records of other shapes and damaged lines in the same segment are still handled."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.serving.capture import _columnar_tables, _record_tables, spool_line, upload_segment
from edgeloop.serving.oip import encode_tensors
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

"""Read captured inference records and labels of one time window from an object store.

Keys: `captures/<model>/<site>/<yyyy>/<mm>/<dd>/<batch>.parquet` (and the same under
`labels/`). Columns read from a capture batch:

- `time` (timestamp, or ISO-8601 text; UTC) picks the rows of the window; required.
- `request_id`, `version` (text), used by live quality and to choose the reference profile.
- the features: an `inputs` column that is a struct (one field per feature) or JSON text:
  an object of feature -> value, or Open Inference Protocol tensors
  `[{"name": ..., "shape": [1, n], "data": [...]}]` as edgeloop's serving captures them,
  whose elements become features `<name>[0]` ... `<name>[n-1]` (a one-element tensor is
  just `<name>`; of a [rows, n] batch, the first row). Without `inputs`, every other
  column is a feature.
- the prediction: an `outputs` column (a scalar, a one-field struct, or JSON as above: the
  first value of the first tensor), else a `prediction` column.

Label batches have `request_id` and `label` (and optionally `time`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from edgeloop.errors import MonitoringError
from edgeloop.monitor.window import as_utc, days_between
from edgeloop.store import ObjectStore

CAPTURES = "captures"
LABELS = "labels"
RESERVED = frozenset(
    {"time", "request_id", "site", "model", "version", "inputs", "outputs", "prediction",
     "label", "batch_id", "latency_ms", "status"}
)  # fmt: skip


@dataclass(frozen=True)
class WindowData:
    """The rows of one window: feature columns, predictions, and the record columns."""

    rows: int
    features: dict[str, pa.ChunkedArray]
    predictions: pa.ChunkedArray | None
    records: pa.Table  # time, request_id, version (when present), in row order


def batch_keys(
    store: ObjectStore, root: str, model: str, site: str, start: datetime, end: datetime
) -> Iterator[str]:
    """Keys of the Parquet batches of `model` at `site` on the days [start, end) touches."""
    for day in days_between(start, end):
        prefix = f"{root}/{model}/{site}/{day:%Y/%m/%d}/"
        for info in store.list(prefix):
            if info.key.endswith(".parquet"):
                yield info.key


def discover_sites(store: ObjectStore, model: str, root: str = CAPTURES) -> list[str]:
    """Sites that have any batch of `model` (sorted), found with one short listing per site."""
    prefix = f"{root}/{model}/"
    sites: list[str] = []
    start_after: str | None = None
    while True:
        first = next(iter(store.list(prefix, start_after=start_after)), None)
        if first is None:
            return sorted(sites)
        site = first.key[len(prefix) :].split("/", 1)[0]
        sites.append(site)
        start_after = f"{prefix}{site}/\x7f"  # past every key of this site


def read_batch(store: ObjectStore, key: str) -> pa.Table:
    """One Parquet batch; a corrupt one raises MonitoringError naming its key."""
    with store.get(key) as reader:
        data = reader.read()
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise MonitoringError(
            f"{key}: not a readable Parquet batch ({exc}); move it aside"
        ) from exc


def _times(table: pa.Table, key: str) -> pa.Array:
    if "time" not in table.column_names:
        raise MonitoringError(f"{key}: no `time` column; capture batches need one (UTC)")
    column = table.column("time")
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            return pc.assume_timezone(column, "UTC").combine_chunks()
        return column.combine_chunks()
    try:
        return pc.cast(column, pa.timestamp("us", tz="UTC")).combine_chunks()
    except pa.ArrowInvalid as exc:
        raise MonitoringError(f"{key}: `time` is not a timestamp or ISO-8601 text ({exc})") from exc


def time_range(table: pa.Table, key: str) -> tuple[datetime, datetime] | None:
    """The first and last `time` of a batch (None when it has no rows)."""
    times = _times(table, key)
    if len(times) == 0 or times.null_count == len(times):
        return None
    bounds = pc.min_max(times)
    return as_utc(bounds["min"].as_py()), as_utc(bounds["max"].as_py())


def in_window(table: pa.Table, key: str, start: datetime, end: datetime) -> pa.Table:
    """The rows of `table` whose `time` lies in [start, end)."""
    times = _times(table, key)
    lo = pa.scalar(as_utc(start), type=pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(as_utc(end), type=pa.timestamp("us", tz="UTC"))
    keep = pc.and_(pc.greater_equal(times, lo), pc.less(times, hi))
    return table.filter(keep).set_column(
        table.column_names.index("time"), "time", times.filter(keep)
    )


def _json_value(raw: Any) -> Any:
    if isinstance(raw, str | bytes):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    return raw


def _flatten_record(value: Any) -> dict[str, Any]:
    """An `inputs` value as feature -> scalar: an object, or a list of OIP tensors."""
    value = _json_value(value)
    if isinstance(value, dict) and "data" not in value:
        return value
    tensors = value if isinstance(value, list) else [value]
    out: dict[str, Any] = {}
    for tensor in tensors:
        if not isinstance(tensor, dict) or "data" not in tensor:
            continue
        data = tensor["data"]
        name = str(tensor.get("name", "input"))
        flat = data if isinstance(data, list) else [data]
        while flat and isinstance(flat[0], list):  # nested rows: flatten, row-major
            flat = [v for row in flat for v in row]
        shape = tensor.get("shape")
        if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(d, int) for d in shape):
            # A [rows, ...] batch in one request: its first row stands for the request.
            flat = flat[: max(1, int(np.prod(shape[1:])))]
        if len(flat) == 1:
            out[name] = flat[0]
        else:
            out.update({f"{name}[{i}]": v for i, v in enumerate(flat)})
    return out


def _first_output(raw: Any) -> Any:
    value = _json_value(raw)
    if not isinstance(value, dict | list):
        return raw  # a plain label such as "1": keep it as written
    if isinstance(value, dict) and "data" not in value:
        return next(iter(value.values()), None) if len(value) == 1 else value.get("prediction")
    flat = _flatten_record(value)
    return next(iter(flat.values()), None)


def _one_tensor_per_row(column: pa.Array, data: pa.DataType | None) -> pa.StructArray | None:
    """The tensor of each row of a JSON text column of one-tensor OIP lists (as edgeloop's
    serving captures them), parsed by pyarrow's JSON reader in one C++ pass, its elements as
    `data` (None: inferred); None when the column has any other shape, and the caller parses
    it row by row instead."""
    if column.null_count or not pa.types.is_string(column.type) or len(column) == 0:
        return None
    options = pa_json.ParseOptions()
    if data is not None:
        tensor = pa.struct([("name", pa.string()), ("shape", pa.list_(pa.int64())),
                            ("data", pa.list_(data))])  # fmt: skip
        options = pa_json.ParseOptions(
            explicit_schema=pa.schema([("t", pa.list_(tensor))]), unexpected_field_behavior="ignore"
        )
    try:
        lines = pc.binary_join_element_wise('{"t":', column, "}\n", "")
        _, offsets, text = lines.buffers()
        end = int(np.frombuffer(offsets, dtype=np.int32)[len(lines)])
        parsed = pa_json.read_json(
            pa.BufferReader(text.slice(0, end)),
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, end // 8 + 1)),
            parse_options=options,
        )
        # pyarrow 26 can infer a list that starts with null into an invalid array: check.
        parsed.validate(full=True)
    except (pa.ArrowException, ValueError):
        return None
    tensors = parsed.column("t").combine_chunks() if "t" in parsed.column_names else None
    if tensors is None or not pa.types.is_list(tensors.type) or tensors.null_count:
        return None
    item = tensors.type.value_type
    if not pa.types.is_struct(item) or {"name", "data"} - {f.name for f in item}:
        return None
    if pc.min_max(pc.list_value_length(tensors)).as_py() != {"min": 1, "max": 1}:
        return None
    first: pa.StructArray = pc.list_flatten(tensors)
    names, data = first.field("name"), first.field("data")
    if names.null_count or len(pc.unique(names)) != 1 or not pa.types.is_list(data.type):
        return None
    return first


def _tensor_matrix(first: pa.StructArray) -> tuple[str, np.ndarray[Any, Any]] | None:
    """(name, rows x elements) of numeric one-tensor rows of equal shape; None otherwise.
    Of a [rows, n] batch in one request, the first row stands for the request."""
    data = first.field("data")
    kind = data.type.value_type
    if data.null_count or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return None
    length = pc.min_max(pc.list_value_length(data)).as_py()
    if length["min"] != length["max"] or not length["min"]:
        return None
    width = int(length["min"])
    keep = width
    if "shape" in first.type.names:
        shapes = first.field("shape")
        dims = pc.list_value_length(shapes)
        if shapes.null_count or pc.min_max(dims).as_py()["min"] != pc.min_max(dims).as_py()["max"]:
            return None
        grid = pc.list_flatten(shapes).to_numpy(zero_copy_only=False).reshape(len(first), -1)
        if grid.shape[1] and not (grid == grid[0]).all():
            return None
        if grid.shape[1] >= 2:
            keep = min(width, max(1, int(np.prod(grid[0, 1:]))))
    flat = pc.list_flatten(data).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return str(first.field("name")[0].as_py()), flat.reshape(len(first), width)[:, :keep]


def _tensor_features(column: pa.Array) -> dict[str, pa.Array] | None:
    """Features of a one-tensor OIP JSON column, named as `_flatten_record` names them."""
    first = _one_tensor_per_row(column, pa.float64())
    found = _tensor_matrix(first) if first is not None else None
    if found is None:
        return None
    name, matrix = found
    if matrix.shape[1] == 1:
        return {name: pa.array(matrix[:, 0])}
    return {f"{name}[{i}]": pa.array(matrix[:, i]) for i in range(matrix.shape[1])}


def _tensor_first_values(column: pa.Array) -> pa.Array | None:
    """The first element of each row's one tensor (`_first_output` in one pass), any type."""
    first = _one_tensor_per_row(column, None)
    if first is None:
        return None
    data = first.field("data")
    kind = data.type.value_type
    if (
        data.null_count
        or pa.types.is_nested(kind)
        or pc.min(pc.list_value_length(data)).as_py() < 1
    ):
        return None
    return pc.list_element(data, 0)


def split_batch(table: pa.Table) -> tuple[dict[str, pa.Array], pa.Array | None]:
    """A batch's feature columns and its predictions, whatever shape `inputs` has."""
    names = table.column_names
    if "inputs" in names:
        inputs = table.column("inputs").combine_chunks()
        if pa.types.is_struct(inputs.type):
            features = {f.name: inputs.field(i) for i, f in enumerate(inputs.type)}
        else:
            fast = _tensor_features(inputs)
            if fast is not None:
                features = fast
            else:
                rows = [_flatten_record(v) for v in inputs.to_pylist()]
                keys = list(dict.fromkeys(k for row in rows for k in row))
                features = {k: _array([row.get(k) for row in rows]) for k in keys}
    else:
        features = {n: table.column(n).combine_chunks() for n in names if n not in RESERVED}
    predictions: pa.Array | None = None
    if "outputs" in names:
        outputs = table.column("outputs").combine_chunks()
        if pa.types.is_struct(outputs.type) and outputs.type.num_fields >= 1:
            predictions = outputs.field(0)
        elif pa.types.is_string(outputs.type) or pa.types.is_large_string(outputs.type):
            predictions = _tensor_first_values(outputs)
            if predictions is None:
                predictions = _array([_first_output(v) for v in outputs.to_pylist()])
        else:
            predictions = outputs
    elif "prediction" in names:
        predictions = table.column("prediction").combine_chunks()
    return features, predictions


def _array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _stack(parts: list[pa.Array | None], lengths: list[int]) -> pa.ChunkedArray:
    """Concatenate per-batch columns; a batch without the column contributes nulls, and
    batches that disagree on the type are combined as text (the drift job then reports it)."""
    types = {p.type for p in parts if p is not None}
    numbers = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types)
    if len(types) == 1:
        common = types.pop()
    elif types and numbers:
        common = pa.float64()  # 3 in one batch and 3.5 in the next are both numbers
    else:
        common = pa.string()
    chunks = []
    for part, length in zip(parts, lengths, strict=True):
        if part is None:
            chunks.append(pa.nulls(length, type=common))
        elif part.type != common and numbers:
            chunks.append(part.cast(common))
        elif part.type != common:
            chunks.append(_array([None if v is None else str(v) for v in part.to_pylist()]))
        else:
            chunks.append(part)
    return pa.chunked_array(chunks, type=common)


_RECORD_COLUMNS = ("time", "request_id", "version")


def read_window(
    store: ObjectStore, model: str, site: str, start: datetime, end: datetime
) -> WindowData:
    """All captured rows of `model` at `site` with time in [start, end), from every batch."""
    batches = []
    for key in batch_keys(store, CAPTURES, model, site, start, end):
        table = in_window(read_batch(store, key), key, start, end)
        if table.num_rows:
            batches.append(table)
    return combine_batches(batches)


def combine_batches(batches: list[pa.Table]) -> WindowData:
    """Merge capture batches (already cut to the window) into one WindowData."""
    split = [split_batch(t) for t in batches]
    lengths = [t.num_rows for t in batches]
    names = list(dict.fromkeys(name for features, _ in split for name in features))
    features = {n: _stack([f.get(n) for f, _ in split], lengths) for n in names}
    has_predictions = any(p is not None for _, p in split)
    predictions = _stack([p for _, p in split], lengths) if has_predictions else None
    record_columns = {
        name: _stack(
            [t.column(name).combine_chunks() if name in t.column_names else None for t in batches],
            lengths,
        )
        for name in _RECORD_COLUMNS
        if any(name in t.column_names for t in batches)
    }
    records = pa.table(record_columns) if record_columns else pa.table({})
    return WindowData(sum(lengths), features, predictions, records)


def read_labels(
    store: ObjectStore, model: str, site: str, start: datetime, end: datetime
) -> pa.Table:
    """`request_id` -> `label` for labels stored on the days [start, end) touches (the
    label may arrive after the capture, so its own time is not filtered); last one wins."""
    tables = []
    for key in batch_keys(store, LABELS, model, site, start, end):
        table = read_batch(store, key)
        missing = {"request_id", "label"} - set(table.column_names)
        if missing:
            raise MonitoringError(f"{key}: label batch lacks column(s) {sorted(missing)}")
        tables.append(table.select(["request_id", "label"]))
    if not tables:
        return pa.table({"request_id": pa.array([], pa.string()), "label": pa.array([])})
    ids = _stack(
        [t.column("request_id").combine_chunks() for t in tables], [len(t) for t in tables]
    )
    labels = _stack([t.column("label").combine_chunks() for t in tables], [len(t) for t in tables])
    # Keep the last label of each request id: later feedback corrects earlier feedback.
    seen: dict[Any, int] = {}
    for i, rid in enumerate(ids.to_pylist()):
        seen[rid] = i
    keep = pa.array(sorted(seen.values()), type=pa.int64())
    return pa.table({"request_id": ids.take(keep), "label": labels.take(keep)})

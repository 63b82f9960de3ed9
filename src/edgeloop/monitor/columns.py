"""Turn one feature column (Arrow, numpy or a list) into numbers or category counts, counting
missing and mistyped values instead of failing on them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

Kind = Literal["numeric", "categorical"]
ColumnLike: TypeAlias = pa.Array | pa.ChunkedArray | NDArray[Any] | Sequence[Any]


@dataclass(frozen=True, slots=True)
class NumericColumn:
    """A numeric column: `values` keeps row order with NaN where a value is missing or invalid."""

    values: NDArray[np.float64]
    missing: int
    invalid: int

    @property
    def rows(self) -> int:
        return int(self.values.size)


@dataclass(frozen=True, slots=True)
class CategoricalColumn:
    """Counts per category (as text), and how many rows had no value."""

    counts: dict[str, int]
    missing: int

    @property
    def rows(self) -> int:
        return sum(self.counts.values()) + self.missing


def as_arrow(column: ColumnLike) -> pa.Array:
    """`column` as one Arrow array; a list of mixed types becomes text rather than an error."""
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(column, pa.Array):
        return column
    try:
        return pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # Mixed types (e.g. 1.5 and "n/a" in one feature): keep every value, as text.
        return pa.array([_text_or_none(v) for v in column], type=pa.string())


def _text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def infer_kind(column: ColumnLike) -> Kind:
    """Numbers are numeric; text, booleans and everything else are categorical."""
    arrow = as_arrow(column)
    kind = arrow.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    return "numeric" if numeric or pa.types.is_decimal(kind) else "categorical"


def _parse_number(text: str | None) -> float:
    if text is None:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.inf  # marks "present but not a number"; counted as invalid below


def numeric_column(column: ColumnLike) -> NumericColumn:
    """Numbers with NaN for nulls; text that is not a number and +-inf count as invalid."""
    arrow = as_arrow(column)
    if pa.types.is_dictionary(arrow.type):
        arrow = arrow.dictionary_decode()
    kind = arrow.type
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or (pa.types.is_boolean(kind))
    ):
        values = arrow.cast(pa.float64()).to_numpy(zero_copy_only=False)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # A numeric feature sent as text: the slow path, which only mistyped data takes.
        values = np.fromiter((_parse_number(v) for v in arrow.to_pylist()), np.float64)
    else:
        values = np.where(pc.is_null(arrow).to_numpy(zero_copy_only=False), math.nan, math.inf)
    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values)
    inf = np.isinf(values)
    if inf.any():
        values = np.where(inf, math.nan, values)
    return NumericColumn(values=values, missing=int(nan.sum()), invalid=int(inf.sum()))


def categorical_column(column: ColumnLike) -> CategoricalColumn:
    """Counts per category; numbers and booleans are counted by their text form."""
    arrow = as_arrow(column)
    if pa.types.is_dictionary(arrow.type):
        arrow = arrow.dictionary_decode()
    if not (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
        try:
            arrow = arrow.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arrow = pa.array([_text_or_none(v) for v in arrow.to_pylist()], type=pa.string())
    missing = arrow.null_count
    counted = pc.value_counts(arrow.drop_null())
    values = counted.field("values").to_pylist()
    counts = counted.field("counts").to_pylist()
    return CategoricalColumn(counts=dict(zip(values, counts, strict=True)), missing=int(missing))

"""Reading served captures: OIP tensor JSON parsed in one C++ pass gives exactly what parsing
it row by row gives (names, values, missing values, predictions), and every shape the fast
path does not take (several tensors, text tensors, objects, ragged rows) still parses."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.monitor.captures import (
    _array,
    _first_output,
    _flatten_record,
    _tensor_features,
    _tensor_first_values,
    split_batch,
)


def row_by_row(inputs: list[str], outputs: list[str]) -> tuple[dict[str, list[Any]], list[Any]]:
    rows = [_flatten_record(v) for v in inputs]
    keys = list(dict.fromkeys(k for row in rows for k in row))
    features = {k: _array([row.get(k) for row in rows]).to_pylist() for k in keys}
    return features, _array([_first_output(v) for v in outputs]).to_pylist()


def as_floats(values: list[Any]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def batch(inputs: list[str], outputs: list[str]) -> pa.Table:
    return pa.table({"inputs": pa.array(inputs), "outputs": pa.array(outputs)})


number = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.none())


@st.composite
def served(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Rows as edgeloop's serving captures them: one input tensor of one shape, one output."""
    rows = draw(st.integers(1, 30))
    batch_rows = draw(st.sampled_from([None, 1, 2]))
    width = draw(st.integers(1, 4))
    name = draw(st.sampled_from(["input", "x", "float_input"]))
    label = draw(st.sampled_from(["int", "text", "float"]))
    inputs, outputs = [], []
    for _ in range(rows):
        count = width * (batch_rows or 1)
        data = draw(st.lists(number, min_size=count, max_size=count))
        tensor: dict[str, Any] = {"name": name, "datatype": "FP32", "data": data}
        if batch_rows is not None:
            tensor["shape"] = [batch_rows, width]
        inputs.append(orjson.dumps([tensor]).decode())
        value = {"int": draw(st.integers(0, 3)), "text": draw(st.sampled_from(["0", "1"])),
                 "float": draw(st.floats(-5, 5))}[label]  # fmt: skip
        outputs.append(orjson.dumps([{"name": "label", "shape": [1], "data": [value]}]).decode())
    return inputs, outputs


@given(served())
@settings(max_examples=150, deadline=None)
def test_one_pass_parse_equals_row_by_row(drawn: tuple[list[str], list[str]]) -> None:
    inputs, outputs = drawn
    features, predictions = split_batch(batch(inputs, outputs))
    expected_features, expected_predictions = row_by_row(inputs, outputs)
    assert list(features) == list(expected_features)
    for name, values in expected_features.items():
        np.testing.assert_array_equal(
            as_floats(features[name].to_pylist()), as_floats(values), err_msg=name
        )
    assert predictions is not None
    got = predictions.to_pylist()
    if all(isinstance(v, str) for v in expected_predictions):
        assert got == expected_predictions
    else:  # 1 and 1.0 are one prediction: the drift job reads them as the same category
        np.testing.assert_array_equal(as_floats(got), as_floats(expected_predictions))


def test_shapes_the_fast_path_leaves_to_row_by_row_parsing() -> None:
    two = orjson.dumps(
        [{"name": "a", "shape": [1, 2], "data": [1, 2]}, {"name": "b", "shape": [1], "data": [3]}]
    ).decode()
    text = orjson.dumps([{"name": "t", "datatype": "BYTES", "data": ["x"]}]).decode()
    ragged = [orjson.dumps([{"name": "i", "data": d}]).decode() for d in ([1, 2], [3])]
    cases = {
        "several tensors": [two, two],
        "text tensor": [text, text],
        "objects": ['{"amount": 1.5, "channel": "web"}'] * 2,
        "ragged rows": ragged,
        "not JSON": ["not json", "[1, 2"],
    }
    for what, inputs in cases.items():
        assert _tensor_features(pa.array(inputs)) is None, what
        features, _ = split_batch(batch(inputs, inputs))
        assert list(features) == list(row_by_row(inputs, inputs)[0]), what
    features, _ = split_batch(batch([two], [two]))
    assert {k: v.to_pylist() for k, v in features.items()} == {"a[0]": [1], "a[1]": [2], "b": [3]}
    assert _tensor_first_values(pa.array([text])) is not None  # a text label is a prediction
    assert _tensor_features(pa.array([], pa.string())) is None
    assert _tensor_features(pa.array([None, two])) is None

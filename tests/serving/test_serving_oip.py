"""OIP v2 JSON parsing and encoding: typed tensors in, clear 4xx errors for bad input."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgeloop.errors import InferenceRequestError
from edgeloop.model.manifest import Datatype, TensorSpec
from edgeloop.serving.oip import (
    check_outputs,
    encode_infer_response,
    encode_spool_tensors,
    encode_tensor,
    encode_tensors,
    parse_infer_request,
    plain_tensors,
)

SPECS = [TensorSpec(name="input", datatype=Datatype.FP32, shape=[-1, 3])]


def _body(**tensor: object) -> bytes:
    base = {"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
    base.update(tensor)
    return orjson.dumps({"id": "r1", "inputs": [base]})


def _error(body: bytes, specs: list[TensorSpec] = SPECS) -> InferenceRequestError:
    with pytest.raises(InferenceRequestError) as info:
        parse_infer_request(body, specs)
    return info.value


def test_flat_and_nested_data_parse_to_the_same_array() -> None:
    flat = parse_infer_request(_body(), SPECS)
    nested = parse_infer_request(_body(data=[[1, 2, 3], [4, 5, 6]]), SPECS)
    assert flat.id == "r1"
    assert flat.inputs["input"].dtype == np.float32 and flat.inputs["input"].shape == (2, 3)
    np.testing.assert_array_equal(flat.inputs["input"], nested.inputs["input"])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (orjson.dumps({"inputs": []}), 400, "non-empty list"),
        (_body(datatype="INT64"), 400, "expects FP32"),
        (_body(shape=[3, 3]), 400, "needs 9 values"),
        (_body(shape=[2, 4]), 400, "does not fit"),
        (_body(shape=[6]), 400, "does not fit"),
        (_body(shape=[2, -3]), 400, "non-negative"),
        (_body(name="other"), 400, "unknown input"),
        (_body(data=[[1, 2, 3], [4, 5]]), 400, "does not fit datatype"),
        (_body(data=["a", "b", "c", "d", "e", "f"]), 400, "does not fit datatype"),
        (_body(shape=[10_000_000, 3]), 413, "elements"),
        (
            orjson.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32"}]}),
            400,
            "no 'data'",
        ),
        (orjson.dumps({"id": 5, "inputs": [{}]}), 400, "'id' must be a string"),
        (b"[" * 5000 + b"]" * 5000, 400, "not valid JSON"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_status(
    body: bytes, status: int, message: str
) -> None:
    error = _error(body)
    assert error.status == status
    assert message in str(error)


def test_missing_and_duplicate_inputs() -> None:
    specs = [*SPECS, TensorSpec(name="mask", datatype=Datatype.BOOL, shape=[-1])]
    assert "missing inputs: mask" in str(_error(_body(), specs))
    tensor = {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    assert "twice" in str(_error(orjson.dumps({"inputs": [tensor, tensor]})))


def test_integer_and_bool_and_bytes_inputs_are_typed() -> None:
    specs = [
        TensorSpec(name="n", datatype=Datatype.INT32, shape=[2]),
        TensorSpec(name="b", datatype=Datatype.BOOL, shape=[2]),
        TensorSpec(name="s", datatype=Datatype.BYTES, shape=[1]),
    ]
    body = orjson.dumps(
        {
            "inputs": [
                {"name": "n", "shape": [2], "datatype": "INT32", "data": [1, 2]},
                {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
                {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
            ]
        }
    )
    request = parse_infer_request(body, specs)
    assert request.inputs["n"].dtype == np.int32 and request.inputs["b"].dtype == np.bool_
    assert request.inputs["s"].tolist() == ["hi"]
    floats = orjson.dumps(
        {"inputs": [{"name": "n", "shape": [2], "datatype": "INT32", "data": [1.5, 2]}]}
    )
    assert "does not fit datatype" in str(_error(floats, specs[:1]))


def test_response_is_flat_typed_and_filters_outputs() -> None:
    outputs = {
        "label": np.array([1, 0], dtype=np.int64),
        "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32),
    }
    doc = orjson.loads(encode_infer_response("m", 3, "r9", outputs))
    assert doc["model_version"] == "3" and doc["id"] == "r9"
    assert doc["outputs"][1] == {
        "name": "probabilities",
        "datatype": "FP32",
        "shape": [2, 2],
        "data": [0.25, 0.75, 0.5, 0.5],
    }
    only = orjson.loads(encode_infer_response("m", 3, "r9", outputs, ("label",)))
    assert [o["name"] for o in only["outputs"]] == ["label"]
    with pytest.raises(InferenceRequestError, match="unknown outputs"):
        encode_infer_response("m", 3, "r9", outputs, ("nope",))


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 5), st.just(3)),
        elements=st.floats(-1e6, 1e6, width=32),
    )
)
def test_encoded_tensors_parse_back_to_the_same_array(array: np.ndarray) -> None:
    encoded = orjson.loads(encode_infer_response("m", 1, "x", {"input": array}))["outputs"][0]
    parsed = parse_infer_request(orjson.dumps({"inputs": [encoded]}), SPECS)
    np.testing.assert_array_equal(parsed.inputs["input"], array)


def test_check_outputs_catches_schema_mismatches() -> None:
    specs = [TensorSpec(name="p", datatype=Datatype.FP32, shape=[-1, 2])]
    check_outputs({"p": np.zeros((3, 2), np.float32)}, specs, rows=3)
    for outputs, message in [
        ({}, "missing"),
        ({"p": np.zeros((3, 2), np.float64)}, "FP64"),
        ({"p": np.zeros((3, 4), np.float32)}, "shape"),
        ({"p": np.zeros((2, 2), np.float32)}, "rows"),
        ({"p": np.full((3, 2), np.nan, np.float32)}, "NaN"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_outputs(outputs, specs, rows=3)


TENSOR_DTYPES = [np.bool_, np.uint8, np.int16, np.int32, np.int64, np.float16, np.float32,
                 np.float64]  # fmt: skip
# Any of those datatypes, of up to three small dimensions (empty ones included).
ANY_TENSOR = st.sampled_from(TENSOR_DTYPES).flatmap(
    lambda dtype: arrays(dtype, st.lists(st.integers(0, 4), max_size=3).map(tuple))
)


def _maybe_strided(array: np.ndarray, strided: bool) -> np.ndarray:
    """Every other element of the last dimension (a view that is not contiguous) if asked."""
    return array[..., ::2] if strided and array.ndim and array.shape[-1] > 1 else array


@settings(max_examples=200)
@given(ANY_TENSOR, st.booleans(), st.sampled_from(["input", "probabilities", 'ünïcode "quoted"']))
def test_tensor_json_is_the_same_bytes_as_encoding_each_tensor_whole(
    array: np.ndarray, strided: bool, name: str
) -> None:
    # encode_tensors caches each (name, dtype, shape)'s JSON head; the bytes must not change,
    # for views that are not contiguous either, and twice in a row (the cached head).
    array = _maybe_strided(array, strided)
    expected = orjson.dumps(
        [encode_tensor(name, array), encode_tensor("second", array.reshape(-1))],
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    tensors = {name: array, "second": array.reshape(-1)}
    assert encode_tensors(tensors) == expected
    assert encode_tensors(tensors) == expected


@settings(max_examples=200)
@given(
    ANY_TENSOR, st.booleans(), st.sampled_from(["input", 'a "data":"x" name', "tab\there"]),
    st.booleans(),
)  # fmt: skip
def test_spool_tensors_print_back_to_the_same_json(
    array: np.ndarray, strided: bool, name: str, with_bytes: bool
) -> None:
    # The capture spool holds numeric tensors as base64 bytes; the uploader must print exactly
    # what encode_tensors would have (NaN, infinities and float16 included), and the spool
    # form must never hold a tab or newline (the spool line's separators).
    array = _maybe_strided(array, strided)
    tensors = {name: array}
    if with_bytes:
        tensors["words"] = np.array(["a\tb", "ü"], dtype=object)
    spooled = encode_spool_tensors(tensors)
    assert b"\t" not in spooled and b"\n" not in spooled
    assert plain_tensors(spooled) == encode_tensors(tensors).decode()


def test_spool_tensors_hold_numbers_as_bytes_and_refuse_damage() -> None:
    spooled = encode_spool_tensors({"x": np.array([[0.1, 2.5]], dtype=np.float32)})
    assert b"0.1" not in spooled and b'"data":"' in spooled
    expected = '[{"name":"x","datatype":"FP32","shape":[1,2],"data":[0.1,2.5]}]'
    assert plain_tensors(spooled) == expected
    plain = encode_tensors({"x": np.array([1, 2])})
    assert plain_tensors(plain) == plain.decode()  # a line of the older, all-JSON spool
    for damaged in [
        spooled.replace(b'"data":"', b'"data":"!'),  # not base64
        spooled.replace(b'"shape":[1,2]', b'"shape":[1,3]'),  # bytes do not fill the shape
        spooled.replace(b"FP32", b"FP99"),
        spooled[:-3],  # cut short
        spooled.replace(b'"name":"x",', b""),  # no name
        spooled.replace(b'"name":"x"', b'"name":7'),
    ]:
        with pytest.raises(ValueError):
            plain_tensors(damaged)

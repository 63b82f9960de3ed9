"""The graph is validated without running anything: cycles, missing inputs, type mismatches."""

from __future__ import annotations

import pytest
from tests.pipeline import steps_for_tests as s

from edgeloop.errors import PipelineDefinitionError
from edgeloop.pipeline.dsl import step
from edgeloop.pipeline.graph import Pipeline, load_pipeline, load_step

calls: list[str] = []


@step
def a(c: int) -> int:
    calls.append("a")
    return c


@step
def b(a: int) -> int:
    calls.append("b")
    return a


@step
def c(b: int) -> int:
    calls.append("c")
    return b


@step
def text() -> str:
    return "x"


@step
def wants_int(text: int) -> int:
    return text


def test_topological_order_follows_dependencies() -> None:
    assert s.ARITHMETIC.order == ("numbers", "squares", "total")
    assert s.ARITHMETIC.upstream("total") == ["squares", "numbers"]


def test_cycle_is_refused_and_named_without_running() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"cycle: .*a.*b.*c|cycle: .*b.*c.*a"):
        Pipeline.build("loop", [a, b, c])
    assert calls == []


def test_missing_input_is_named() -> None:
    with pytest.raises(PipelineDefinitionError, match="reads 'a', which no step produces"):
        Pipeline.build("half", [b])


def test_type_mismatch_is_refused() -> None:
    with pytest.raises(PipelineDefinitionError, match="wants 'text' as int but it is str"):
        Pipeline.build("types", [text, wants_int])


def test_int_feeds_float_and_any() -> None:
    @step
    def want_float(numbers: float) -> float:
        return numbers

    with pytest.raises(PipelineDefinitionError):  # list[int] is no float
        Pipeline.build("bad", [s.numbers, want_float], inputs={"n": int})


def test_duplicate_step_names_and_input_clash() -> None:
    with pytest.raises(PipelineDefinitionError, match="two steps"):
        Pipeline.build("dup", [s.numbers, s.numbers], inputs={"n": int})
    with pytest.raises(PipelineDefinitionError, match="both a run input and a step"):
        Pipeline.build("clash", [s.numbers], inputs={"n": int, "numbers": int})


def test_not_a_step_is_refused() -> None:
    with pytest.raises(PipelineDefinitionError, match="not a step"):
        Pipeline.build("plain", [lambda: 1])  # type: ignore[list-item]


def test_references_load_steps_and_pipelines() -> None:
    assert load_step(s.squares.ref) is s.squares
    assert load_pipeline("tests.pipeline.steps_for_tests:ARITHMETIC") is s.ARITHMETIC
    with pytest.raises(PipelineDefinitionError, match="cannot import"):
        load_pipeline("tests.pipeline.steps_for_tests:NOPE")
    with pytest.raises(PipelineDefinitionError, match="not a pipeline reference"):
        load_pipeline("no-colon")


def test_describe_lists_resource_hints() -> None:
    desc = s.ARITHMETIC.describe()
    assert [x["name"] for x in desc["steps"]] == ["numbers", "squares", "total"]
    assert desc["steps"][1]["cpu"] == 1

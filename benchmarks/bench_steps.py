"""Steps for benchmarks/pipeline.py, importable by kfp's subprocess workers."""

from __future__ import annotations

from edgeloop.pipeline.dsl import step
from edgeloop.pipeline.graph import Pipeline


@step
def s0(x: int) -> int:
    return x + 1


@step
def s1(s0: int) -> int:
    return s0 + 1


@step
def s2(s1: int) -> int:
    return s1 + 1


CHAIN3 = Pipeline.build("chain3", [s0, s1, s2], inputs={"x": int})

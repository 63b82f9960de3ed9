"""Property tests of the whole drift report: whatever a window holds (mixed types, NaN, inf,
text in numbers, nulls, empty or missing columns), the report has a status and JSON without
NaN, never an exception; and a window equal to the reference never drifts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.monitor.drift import DriftSettings, evaluate_drift
from edgeloop.monitor.profile import build_profile
from edgeloop.testing.driftdata import T0, features, predictions_for

REFERENCE = features(np.random.default_rng(3), 2000)
PROFILE = build_profile("churn", "1", REFERENCE, predictions_for(REFERENCE))
STATUSES = {"drift", "no_drift", "empty", "insufficient_data"}
FEATURE_STATUSES = {"ok", "drift", "no_data", "missing_column"}

anything = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**12), 10**12),
    st.text(max_size=6),
    st.booleans(),
    st.sampled_from(["web", "store", "phone", "n/a", ""]),
)
numbers = st.one_of(st.none(), st.floats(-1e6, 1e6), st.integers(0, 100))


@st.composite
def windows(draw: st.DrawFn) -> tuple[dict[str, list[Any]], list[Any] | None]:
    rows = draw(st.integers(0, 60))
    column = st.lists(st.one_of(anything, numbers), min_size=rows, max_size=rows)
    names = draw(st.sets(st.sampled_from([*PROFILE.features, "unknown"])))
    window = {name: draw(column) for name in sorted(names)}
    predictions = draw(st.one_of(st.none(), column))
    return window, predictions


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NaN arithmetic would be a bug
@given(windows(), st.integers(1, 30), st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_window_gives_a_report_never_an_exception(
    drawn: tuple[dict[str, list[Any]], list[Any] | None], min_rows: int, multivariate: bool
) -> None:
    window, predictions = drawn
    report = evaluate_drift(
        PROFILE,
        window,
        predictions,
        site="edge-a",
        window_start=T0,
        window_end=T0 + timedelta(hours=1),
        settings=DriftSettings(min_rows=min_rows, multivariate=multivariate),
    )
    assert report.status in STATUSES
    assert all(f.status in FEATURE_STATUSES for f in report.features)
    if report.status in ("drift", "no_drift"):
        judged = {f.name: f.status for f in report.features}
        assert set(judged) == set(PROFILE.features)
        for name, status in judged.items():
            assert (status == "missing_column") == (name not in window)
    assert (report.status == "drift") == bool(report.drifted)
    # JSON has no NaN or inf (orjson would write them as null silently: check the source).
    raw = report.to_dict()
    orjson.dumps(raw)
    floats = [v for v in _leaves(raw) if isinstance(v, float)]
    assert all(np.isfinite(v) for v in floats)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


@given(
    st.lists(st.floats(-1e3, 1e3), min_size=20, max_size=300),
    st.data(),
)
@settings(max_examples=80, deadline=None)
def test_a_window_equal_to_the_reference_never_drifts(values: list[float], data: Any) -> None:
    cats = data.draw(st.lists(st.sampled_from("abcde"), min_size=len(values), max_size=len(values)))
    columns = {"x": np.asarray(values), "c": np.asarray(cats)}
    profile = build_profile("m", "1", columns, np.asarray(cats))
    report = evaluate_drift(
        profile,
        columns,
        np.asarray(cats),
        site="s",
        window_start=T0,
        window_end=T0 + timedelta(hours=1),
        settings=DriftSettings(min_rows=1, multivariate=False),
    )
    assert report.status == "no_drift", report.drifted
    by_name = {f.name: f for f in report.features}
    assert by_name["x"].statistics["ks"] == 0.0
    assert by_name["x"].statistics["psi"] < 1e-9
    assert by_name["c"].statistics["js"] < 1e-9


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("multivariate", [False, True])
def test_values_near_the_float_limit_give_a_finite_report(multivariate: bool) -> None:
    """Two values of 1e308 past the reference range overflow the tail sum to inf."""
    huge = [1e308, 1e308]
    window = {n: huge for n, f in PROFILE.features.items() if f.kind == "numeric"}
    report = evaluate_drift(
        PROFILE,
        window,
        None,
        site="edge-a",
        window_start=T0,
        window_end=T0 + timedelta(hours=1),
        settings=DriftSettings(min_rows=1, multivariate=multivariate),
    )
    floats = [v for v in _leaves(report.to_dict()) if isinstance(v, float)]
    assert floats and all(np.isfinite(v) for v in floats)
    assert report.status == "drift"

"""Event envelope: validation and JSON round trips."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeloop.model.events import Event


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Event(type="t", site="s", subject="x", time=datetime(2026, 1, 1))


def test_empty_type_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Event(type="", site="s", subject="x")


def test_from_dict_reports_missing_fields() -> None:
    with pytest.raises(ValueError, match="not an edgeloop event"):
        Event.from_dict({"type": "t"})


def test_fresh_events_get_distinct_ids() -> None:
    assert Event(type="t", site="s", subject="").id != Event(type="t", site="s", subject="").id


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    type_=st.text(min_size=1, max_size=20),
    site=st.text(max_size=10),
    subject=st.text(max_size=30),
    data=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_json_round_trip(type_: str, site: str, subject: str, data: dict[str, object]) -> None:
    event = Event(type=type_, site=site, subject=subject, data=data)
    assert Event.from_json(event.to_json()) == event

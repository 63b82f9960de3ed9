"""The built-in gate as a pure function: holdout improvement, per-site regression, and the
optional bound on recent labelled data."""

from __future__ import annotations

from typing import Any

from edgeloop.pipeline.retrain.pipeline import gate


def _scores(accuracy: float, rows: int, **per_site: float) -> dict[str, Any]:
    return {"accuracy": accuracy, "rows": rows, "per_site": per_site or {"a": accuracy}}


def _evaluation(cand: tuple[float, float], champ: tuple[float, float], recent_rows: int = 50):
    return {
        "candidate": {"holdout": _scores(cand[0], 200), "recent": _scores(cand[1], recent_rows)},
        "champion": {"holdout": _scores(champ[0], 200), "recent": _scores(champ[1], recent_rows)},
        "champion_version": 1,
    }


CONFIG = {"model": "m", "n_features": 3}


def test_recent_data_is_not_checked_by_default() -> None:
    result = gate(_evaluation((0.9, 0.5), (0.85, 0.9)), CONFIG)
    assert result["passed"], result["reasons"]
    assert result["candidate_recent"] == 0.5 and result["champion_recent"] == 0.9


def test_a_candidate_worse_on_recent_data_is_refused_when_bounded() -> None:
    result = gate(_evaluation((0.9, 0.5), (0.85, 0.9)), {**CONFIG, "max_recent_regression": 0.1})
    assert not result["passed"]
    assert result["reasons"] == [
        "recent data (50 rows): accuracy 0.5000 regresses more than 0.1 from 0.9000"
    ]


def test_within_the_bound_or_too_few_recent_rows_passes() -> None:
    bounded = {**CONFIG, "max_recent_regression": 0.1}
    assert gate(_evaluation((0.9, 0.85), (0.85, 0.9)), bounded)["passed"]
    few = gate(_evaluation((0.9, 0.5), (0.85, 0.9), recent_rows=5), bounded)
    assert few["passed"] and few["candidate_recent"] == 0.5


def test_holdout_and_site_rules_still_apply() -> None:
    worse = gate(_evaluation((0.8, 0.9), (0.85, 0.9)), CONFIG)
    assert not worse["passed"] and "holdout accuracy 0.8000 < champion" in worse["reasons"][0]
    evaluation = _evaluation((0.9, 0.9), (0.85, 0.9))
    evaluation["candidate"]["holdout"]["per_site"] = {"a": 0.95, "b": 0.7}
    evaluation["champion"]["holdout"]["per_site"] = {"a": 0.85, "b": 0.85}
    site = gate(evaluation, CONFIG)
    assert not site["passed"] and site["reasons"][0].startswith("site b: accuracy 0.7000")


def test_no_champion_passes() -> None:
    evaluation = _evaluation((0.5, 0.5), (0.0, 0.0))
    evaluation["champion"] = None
    result = gate(evaluation, {**CONFIG, "max_recent_regression": 0.0})
    assert result["passed"] and result["champion"] is None and result["champion_recent"] is None

"""Judging a window against a reference profile: shifts found per feature kind, and clear
results (not crashes) for empty windows, missing and mistyped values, missing columns."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from edgeloop.errors import MonitoringError
from edgeloop.monitor.drift import DriftSettings, evaluate_drift
from edgeloop.monitor.profile import ReferenceProfile, build_profile
from edgeloop.testing.driftdata import T0, features, predictions_for
from edgeloop.workspace.config import DriftThresholds, MonitoringConfig
from edgeloop.workspace.loader import parse_config

END = T0 + timedelta(hours=1)


@pytest.fixture
def profile(rng: np.random.Generator) -> ReferenceProfile:
    cols = features(rng, 5000)
    return build_profile("churn", "1", cols, predictions_for(cols))


def judge(profile: ReferenceProfile, cols: dict, preds=None, **settings):  # type: ignore[no-untyped-def]
    return evaluate_drift(
        profile, cols, preds, site="edge-a", window_start=T0, window_end=END,
        settings=DriftSettings(**settings),
    )  # fmt: skip


def test_profile_round_trips_through_json(profile: ReferenceProfile) -> None:
    raw = profile.to_json()
    assert b"pickle" not in raw
    again = ReferenceProfile.from_json(raw)
    assert again == profile
    assert set(again.features) == {"amount", "age", "channel"}
    assert again.features["amount"].kind == "numeric"
    assert again.features["channel"].kind == "categorical"
    assert again.prediction is not None and again.prediction.kind == "categorical"
    assert again.sample is not None and again.sample.columns == ("amount", "age")


def test_a_broken_profile_says_how_to_fix_it() -> None:
    with pytest.raises(MonitoringError, match="edgeloop drift profile"):
        ReferenceProfile.from_json(b'{"format": "something-else"}')
    with pytest.raises(MonitoringError, match="malformed"):
        ReferenceProfile.from_json(b'{"format": "edgeloop.profile/v1", "model": "m"}')


def test_same_distribution_is_no_drift(profile: ReferenceProfile, rng: np.random.Generator) -> None:
    cols = features(rng, 2000)
    report = judge(profile, cols, predictions_for(cols))
    assert report.status == "no_drift"
    assert report.drifted == []
    assert [f.status for f in report.features] == ["ok", "ok", "ok"]


def test_shift_is_found_in_numeric_categorical_and_predictions(
    profile: ReferenceProfile, rng: np.random.Generator
) -> None:
    cols = features(rng, 2000, shift=1.0)
    report = judge(profile, cols, predictions_for(cols))
    assert report.status == "drift"
    assert set(report.drifted) >= {"amount", "channel", "prediction"}
    assert "age" not in report.drifted
    amount = next(f for f in report.features if f.name == "amount")
    assert amount.statistics["psi"] > 0.2 and amount.statistics["wasserstein_std"] > 0.5
    assert any(r.startswith("p-value") for r in amount.reasons)
    assert amount.plot is not None and amount.plot.edges is not None
    assert sum(amount.plot.current) == pytest.approx(1.0)


def test_multivariate_test_sees_a_joint_shift(rng: np.random.Generator) -> None:
    n = 4000
    a, b = rng.normal(size=n), rng.normal(size=n)
    profile = build_profile("m", "1", {"a": a, "b": b})
    z = rng.normal(size=n)
    joint = {"a": z, "b": 0.95 * z + np.sqrt(1 - 0.95**2) * rng.normal(size=n)}
    report = judge(profile, joint)
    assert report.multivariate is not None and report.multivariate.drifted
    assert not any(f.drifted for f in report.features)  # each column alone is unchanged
    assert report.drifted == ["multivariate"]
    assert report.status == "drift"


def test_report_false_alarm_rate_stays_within_significance(rng: np.random.Generator) -> None:
    # Distances off: the tests alone decide, the strictest setting for false alarms.
    cols = features(rng, 4000)
    profile = build_profile("churn", "1", cols, predictions_for(cols))
    off = DriftThresholds(psi=None, ks=None, wasserstein=None, js=None)
    draws, significance = 60, 0.1
    alarms = 0
    for _ in range(draws):
        window = features(rng, 300)
        report = judge(
            profile, window, predictions_for(window), significance=significance,
            thresholds=lambda _name: off,
        )  # fmt: skip
        alarms += report.status == "drift"
    from scipy.stats import binom

    assert alarms <= binom.ppf(0.9999, draws, significance)


def test_empty_and_short_windows_are_reported_not_judged(profile: ReferenceProfile) -> None:
    empty = judge(profile, {})
    assert empty.status == "empty" and empty.rows == 0 and empty.drifted == []
    short = judge(profile, {"amount": [1.0, 2.0], "age": [30, 40], "channel": ["web", "web"]})
    assert short.status == "insufficient_data"
    assert "min_rows" in short.notes[0]


def test_missing_values_mistyped_values_and_missing_columns(
    profile: ReferenceProfile, rng: np.random.Generator
) -> None:
    n = 600
    cols = features(rng, n)
    amount: list[object] = list(cols["amount"])
    amount[:100] = [None] * 50 + ["n/a"] * 50  # a mix of nulls and text in a numeric feature
    window = {"amount": amount, "channel": pa.array(cols["channel"]).dictionary_encode()}
    report = judge(profile, window)
    by_name = {f.name: f for f in report.features}
    assert by_name["age"].status == "missing_column"
    assert by_name["amount"].missing == 50 and by_name["amount"].invalid == 50
    assert by_name["amount"].status in {"ok", "drift"}
    assert any("wrong type" in note for note in by_name["amount"].notes)
    assert any("missing share" in note for note in by_name["amount"].notes)
    assert by_name["channel"].status == "ok"
    assert report.prediction is not None and report.prediction.status == "missing_column"


def test_all_missing_feature_is_no_data(
    profile: ReferenceProfile, rng: np.random.Generator
) -> None:
    cols = features(rng, 400)
    cols["amount"] = [None] * 400
    report = judge(profile, cols)
    amount = next(f for f in report.features if f.name == "amount")
    assert amount.status == "no_data" and amount.missing == 400


def test_unseen_categories_and_numbers_in_a_categorical_feature(
    profile: ReferenceProfile, rng: np.random.Generator
) -> None:
    cols = features(rng, 1000)
    cols["channel"] = [1, 2, "web"] * 300 + [None] * 100
    report = judge(profile, cols)
    channel = next(f for f in report.features if f.name == "channel")
    assert channel.drifted
    assert any("'1'" in note for note in channel.notes)


def test_thresholds_come_from_the_workspace_config(
    profile: ReferenceProfile, rng: np.random.Generator
) -> None:
    config = parse_config(
        "project: p\nsites: [{name: core, tier: core, store: s}]\n"
        "monitoring:\n  models:\n    churn:\n      features:\n        amount: {psi: 50, ks: 0.99,"
        " wasserstein: 99}\n"
    ).monitoring
    cols = features(rng, 2000, shift=1.0)
    from edgeloop.monitor.job import settings_for

    report = judge_with(profile, cols, settings_for(config, "churn"))
    assert "amount" not in report.drifted  # its distances are set out of reach
    assert "channel" in report.drifted
    assert settings_for(MonitoringConfig(), "churn").significance == 0.01


def judge_with(profile: ReferenceProfile, cols: dict, settings: DriftSettings):  # type: ignore[no-untyped-def]
    return evaluate_drift(
        profile, cols, None, site="edge-a", window_start=T0, window_end=END, settings=settings
    )


def test_report_json_has_no_nan(profile: ReferenceProfile, rng: np.random.Generator) -> None:
    import orjson

    cols = features(rng, 500)
    cols["amount"] = [float("nan")] * 500
    report = judge(profile, cols)
    raw = orjson.dumps(report.to_dict())
    assert b"NaN" not in raw
    assert orjson.loads(raw)["status"] == report.status

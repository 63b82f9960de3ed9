"""Refit or warm start in the retraining pipeline's `train`, with real scikit-learn estimators."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import MultinomialNB

from edgeloop.errors import PipelineError
from edgeloop.pipeline.retrain.fitting import (
    dump_estimator,
    fit_estimator,
    load_estimator,
    make_estimator,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def rows(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, np.where(x[:, 0] - x[:, 1] > 0, "1", "0")


def cfg(**over: object) -> dict[str, object]:
    return {"estimator": "logistic_regression", "C": 1.0, "alpha": 1e-4, "max_iter": 500, **over}


def test_refit_ignores_the_previous_estimator() -> None:
    x, y = rows(1)
    previous = LogisticRegression().fit(x, y)
    fresh = make_estimator(cfg())
    fitted = fit_estimator(fresh, previous, x, y, "refit")
    assert fitted.estimator is fresh and fitted.how == "refit" and fitted.note is None


def test_warm_start_begins_from_the_previous_coefficients() -> None:
    x, y = rows(1)
    previous = LogisticRegression(max_iter=500).fit(x, y)
    start = previous.coef_.copy()
    x2, y2 = rows(2)
    # One iteration: a warm start barely moves from the champion; a refit is still near zero.
    warm = fit_estimator(make_estimator(cfg(max_iter=1)), previous, x2, y2, "warm_start")
    cold = fit_estimator(make_estimator(cfg(max_iter=1)), None, x2, y2, "warm_start")
    assert warm.how == "warm_start" and warm.estimator is previous
    assert warm.estimator.max_iter == 1 and warm.estimator.warm_start is True
    assert np.abs(warm.estimator.coef_ - start).max() < 0.5 * np.abs(start).max()
    assert cold.how == "refit" and cold.note == "no champion estimator to start from"
    assert np.abs(cold.estimator.coef_ - start).max() > 0.5 * np.abs(start).max()


def test_sgd_warm_start_and_partial_fit_only_estimators() -> None:
    x, y = rows(3)
    previous = make_estimator(cfg(estimator="sgd_classifier")).fit(x, y)
    fitted = fit_estimator(
        make_estimator(cfg(estimator="sgd_classifier")), previous, x, y, "warm_start"
    )
    assert fitted.how == "warm_start" and isinstance(fitted.estimator, SGDClassifier)
    counts = np.abs(np.round(x * 3)).astype(int)
    nb = MultinomialNB().fit(counts, y)
    before = nb.class_count_.copy()
    again = fit_estimator(MultinomialNB(), nb, counts, y, "warm_start")
    assert again.how == "partial_fit"
    assert again.estimator.class_count_.tolist() == (before * 2).tolist()  # both batches counted


@pytest.mark.parametrize(
    ("previous", "labels", "note"),
    [
        (SGDClassifier(loss="log_loss"), None, "the champion is a SGDClassifier"),
        (LogisticRegression(), ["0", "1", "2"], "the labels changed"),
    ],
)
def test_a_warm_start_that_cannot_apply_refits_and_says_why(
    previous: object, labels: list[str] | None, note: str
) -> None:
    x, y = rows(4)
    if labels is not None:
        y = np.array(labels * (len(y) // len(labels) + 1))[: len(y)]
    previous.fit(x, rows(4)[1])  # type: ignore[attr-defined]
    fitted = fit_estimator(make_estimator(cfg()), previous, x, y, "warm_start")
    assert fitted.how == "refit" and fitted.note is not None and fitted.note.startswith(note)


def test_bad_settings_are_named() -> None:
    x, y = rows(5)
    with pytest.raises(PipelineError, match="refit or warm_start"):
        fit_estimator(make_estimator(cfg()), None, x, y, "continue")
    with pytest.raises(PipelineError, match="replace the `train` step"):
        make_estimator(cfg(estimator="xgboost"))


def test_estimators_round_trip_as_skops_and_untrusted_types_are_refused() -> None:
    from sklearn.preprocessing import FunctionTransformer

    x, y = rows(6)
    model = LogisticRegression().fit(x, y)
    back = load_estimator(dump_estimator(model))
    assert back.coef_.tolist() == model.coef_.tolist()
    with pytest.raises(PipelineError, match="outside the allowlist"):
        load_estimator(dump_estimator(FunctionTransformer(func=os.getcwd)))
    with pytest.raises(PipelineError, match="not a readable skops file"):
        load_estimator(b"PK\x03\x04 not really a zip")

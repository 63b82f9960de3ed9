"""How the retraining pipeline fits its estimator: a fresh refit, or a warm start from the
champion's estimator (its `warm_start` parameter, else `partial_fit`), kept as skops bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.errors import PipelineError

REFIT, WARM_START = "refit", "warm_start"
FIT_MODES = (REFIT, WARM_START)
ESTIMATORS = ("logistic_regression", "sgd_classifier")


def make_estimator(cfg: dict[str, Any]) -> Any:
    """A new, unfitted estimator of the kind and hyperparameters `cfg` names."""
    kind = cfg["estimator"]
    if kind == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=float(cfg["C"]), max_iter=int(cfg["max_iter"]))
    if kind == "sgd_classifier":
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(
            loss="log_loss",
            alpha=float(cfg["alpha"]),
            max_iter=int(cfg["max_iter"]),
            random_state=0,
        )
    raise PipelineError(
        f"config.estimator {kind!r} is not built in ({', '.join(ESTIMATORS)}); to train another "
        "kind, replace the `train` step (docs/pipelines.md)"
    )


def check_fit_mode(mode: str) -> str:
    """`mode` if it is one of FIT_MODES, else a PipelineError that names them."""
    if mode not in FIT_MODES:
        raise PipelineError(f"config.fit {mode!r}: use {' or '.join(FIT_MODES)}")
    return mode


@dataclass(frozen=True)
class Fitted:
    """A fitted estimator and how it was fitted: `refit`, `warm_start` or `partial_fit`, with
    the reason when a warm start was asked for but a refit was done."""

    estimator: Any
    how: str
    note: str | None = None


def fit_estimator(
    fresh: Any, previous: Any | None, x: np.ndarray, y: np.ndarray, mode: str
) -> Fitted:
    """Fit on (x, y): `fresh` from scratch for a refit, or `previous` warm-started with the
    hyperparameters of `fresh`. A warm start that cannot apply (no previous estimator, another
    kind, other labels) falls back to a refit and says why."""
    if check_fit_mode(mode) == REFIT:
        return Fitted(fresh.fit(x, y), REFIT)
    reason = _cannot_warm_start(fresh, previous, y)
    if reason is not None or previous is None:
        return Fitted(fresh.fit(x, y), REFIT, reason)
    params = fresh.get_params()
    if "warm_start" in params:
        previous.set_params(**{**params, "warm_start": True})
        return Fitted(previous.fit(x, y), WARM_START)
    previous.set_params(**params)
    return Fitted(previous.partial_fit(x, y), "partial_fit")


def _cannot_warm_start(fresh: Any, previous: Any | None, y: np.ndarray) -> str | None:
    if previous is None:
        return "no champion estimator to start from"
    if type(previous) is not type(fresh):
        return (
            f"the champion is a {type(previous).__name__}, config.estimator makes a "
            f"{type(fresh).__name__}"
        )
    if "warm_start" not in fresh.get_params() and not hasattr(fresh, "partial_fit"):
        return f"{type(fresh).__name__} has neither warm_start nor partial_fit"
    known = {str(c) for c in getattr(previous, "classes_", [])}
    seen = {str(c) for c in np.unique(y)}
    if seen != known:
        return f"the labels changed ({sorted(known)} -> {sorted(seen)})"
    return None


def dump_estimator(estimator: Any) -> bytes:
    """The estimator as skops bytes (no pickle)."""
    import skops.io as sio

    data: bytes = sio.dumps(estimator)
    return data


def load_estimator(data: bytes) -> Any:
    """An estimator from skops bytes, refusing any type skops does not trust by default and
    edgeloop does not allowlist (skops files can name arbitrary classes)."""
    import skops.io as sio

    from edgeloop.serving.runtimes.sklearn import ALLOWED_TYPES

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a corrupt zip or schema: skops raises many kinds
        raise PipelineError(
            f"the champion's estimator is not a readable skops file: {exc}"
        ) from None
    refused = sorted(set(untrusted) - ALLOWED_TYPES)
    if refused:
        raise PipelineError(
            f"the champion's estimator holds types outside the allowlist: {', '.join(refused)}"
        )
    return sio.loads(data, trusted=list(untrusted))

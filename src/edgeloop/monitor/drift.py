"""Judge one window of data against a reference profile: the pure core of the drift job.

A feature drifts when its test is significant (KS for numbers, chi-squared for categories,
at the report's significance divided by the number of tests, so a whole report raises a
false alarm at most that often) AND one of its distances (PSI, KS, Wasserstein in reference
standard deviations, Jensen-Shannon) reaches its threshold, so tiny but significant shifts
in huge windows do not page anyone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from edgeloop.monitor.columns import ColumnLike, categorical_column, numeric_column
from edgeloop.monitor.profile import (
    OTHER,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    ReferenceProfile,
)
from edgeloop.monitor.stats import (
    bin_counts,
    bin_counts_both,
    capped,
    chi2_homogeneity,
    finite_mean,
    js_divergence,
    ks_binned,
    mmd_test,
    psi,
    tail_excess,
    wasserstein_binned,
)
from edgeloop.workspace.config import DriftThresholds

PSI_BINS = 10
PLOT_BINS = 30
PLOT_CATEGORIES = 12
MMD_ROWS = 500
MMD_PERMUTATIONS = 500
MMD_MAX_PERMUTATIONS = 4000
PREDICTION = "prediction"

FeatureStatus = Literal["ok", "drift", "no_data", "missing_column"]
ReportStatus = Literal["drift", "no_drift", "empty", "insufficient_data"]


@dataclass(frozen=True)
class Plot:
    """What the HTML page draws: shares of reference and window per bin or category.

    For numeric features `edges` has one more entry than the shares (bin boundaries); for
    categorical ones `labels` names each bar.
    """

    reference: list[float]
    current: list[float]
    edges: list[float] | None = None
    labels: list[str] | None = None


@dataclass(frozen=True)
class FeatureDrift:
    """The verdict on one feature (or the predictions) for one window."""

    name: str
    kind: str
    status: FeatureStatus
    rows: int = 0
    missing: int = 0
    invalid: int = 0
    reference_missing_share: float = 0.0
    statistics: dict[str, float] = field(default_factory=dict)
    pvalue: float | None = None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plot: Plot | None = None

    @property
    def drifted(self) -> bool:
        return self.status == "drift"


@dataclass(frozen=True)
class MultivariateDrift:
    """The MMD test on a sample of rows of the numeric features."""

    method: str
    statistic: float
    pvalue: float
    columns: list[str]
    reference_rows: int
    current_rows: int
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """One model, one site, one window: every feature's verdict and the overall status."""

    model: str
    site: str
    version: str
    window_start: datetime
    window_end: datetime
    rows: int
    status: ReportStatus
    significance: float
    test_significance: float
    features: list[FeatureDrift]
    prediction: FeatureDrift | None = None
    multivariate: MultivariateDrift | None = None
    notes: list[str] = field(default_factory=list)
    reference_site: str | None = None
    """The site whose training rows the reference describes (None: every site's)."""

    @property
    def drifted(self) -> list[str]:
        """Names of what drifted (features, `prediction`, `multivariate`)."""
        names = [f.name for f in self.features if f.drifted]
        if self.prediction is not None and self.prediction.drifted:
            names.append(PREDICTION)
        if self.multivariate is not None and self.multivariate.drifted:
            names.append("multivariate")
        return names

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["window_start"] = self.window_start.isoformat()
        raw["window_end"] = self.window_end.isoformat()
        raw["drifted"] = self.drifted
        return _json_safe(raw)


def _json_safe(value: Any) -> Any:
    """NaN and inf have no JSON form: they become None."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class DriftSettings:
    """How to judge: significance per report, the smallest window judged, thresholds per
    feature (a function of the feature's name), and whether to run the multivariate test."""

    significance: float = 0.01
    min_rows: int = 100
    multivariate: bool = True
    thresholds: Callable[[str], DriftThresholds] = lambda _name: DriftThresholds()


def _group_ids(ref_counts: NDArray[np.int64], groups: int) -> NDArray[np.int64]:
    """Map sketch bins to about `groups` contiguous groups of equal reference share."""
    total = ref_counts.sum()
    before = (np.cumsum(ref_counts) - ref_counts) / max(total, 1)
    ids = np.minimum(np.floor(before * groups + 1e-9).astype(np.int64), groups - 1)
    return np.unique(ids, return_inverse=True)[1].astype(np.int64)


def _regroup(counts: NDArray[np.int64], ids: NDArray[np.int64]) -> NDArray[np.float64]:
    grouped = np.bincount(ids, weights=counts, minlength=int(ids.max()) + 1)
    return grouped.astype(np.float64)


def _judge(
    thresholds: DriftThresholds, pvalue: float, alpha: float, stats: dict[str, float]
) -> tuple[FeatureStatus, list[str]]:
    limits = {
        "psi": thresholds.psi,
        "ks": thresholds.ks,
        "wasserstein_std": thresholds.wasserstein,
        "js": thresholds.js,
    }
    applicable = {k: v for k, v in limits.items() if v is not None and k in stats}
    crossed = [f"{k} {stats[k]:.4g} >= {v:g}" for k, v in applicable.items() if stats[k] >= v]
    if pvalue >= alpha:
        return "ok", []
    if applicable and not crossed:
        return "ok", []
    return "drift", [f"p-value {pvalue:.3g} < {alpha:.3g}", *crossed]


def _numeric_drift(
    name: str,
    profile: NumericProfile,
    column: ColumnLike,
    thresholds: DriftThresholds,
    alpha: float,
) -> FeatureDrift:
    parsed = numeric_column(column)
    values = parsed.values[np.isfinite(parsed.values)]
    ref_missing = profile.missing / profile.rows if profile.rows else 0.0
    base = FeatureDrift(
        name, "numeric", "no_data", parsed.rows, parsed.missing, parsed.invalid, ref_missing
    )
    if values.size == 0 or profile.present == 0:
        side = "window" if values.size == 0 else "reference"
        return _with(base, notes=[f"no finite values in the {side}; nothing to compare"])
    edges = profile.edges_array()
    ref = profile.counts_array()
    # Discrete features also need the counts strictly below each edge (exact Wasserstein).
    cur, cur_open = bin_counts_both(values, edges) if profile.discrete else (
        bin_counts(values, edges), None
    )  # fmt: skip
    ks = ks_binned(ref, cur)
    lo, hi = float(values.min()), float(values.max())
    below, above = tail_excess(values, edges)
    distance = wasserstein_binned(
        edges, ref, cur, below=below, above=above, ref_on_edges=profile.discrete,
        cur_open_counts=cur_open,
    )  # fmt: skip
    std = profile.std or 0.0
    ids = _group_ids(ref, PSI_BINS)
    stats = {
        "psi": psi(_regroup(ref, ids), _regroup(cur, ids)),
        "ks": ks.statistic,
        "ks_pvalue": ks.pvalue,
        "wasserstein": distance,
        # A constant reference has no spread to scale by: any movement is then in raw units.
        "wasserstein_std": capped(distance / std) if std > 0 else distance,
        "mean": finite_mean(values),
        "reference_mean": profile.mean if profile.mean is not None else float("nan"),
    }
    status, reasons = _judge(thresholds, ks.pvalue, alpha, stats)
    return _with(
        base,
        status=status,
        statistics=stats,
        pvalue=ks.pvalue,
        reasons=reasons,
        notes=_missing_notes(ref_missing, parsed.missing, parsed.invalid, parsed.rows),
        plot=_numeric_plot(edges, ref, cur, lo, hi),
    )


def _numeric_plot(
    edges: NDArray[np.float64], ref: NDArray[np.int64], cur: NDArray[np.int64], lo: float, hi: float
) -> Plot:
    ids = _group_ids(ref, PLOT_BINS)
    grid = np.concatenate([[min(lo, edges[0])], edges, [max(hi, edges[-1])]])
    # Group g spans from the start of its first bin to the end of its last bin.
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1])
    bounds = np.concatenate([grid[starts], [grid[-1]]])
    r = _regroup(ref, ids)
    c = _regroup(cur, ids)
    return Plot(
        reference=(r / r.sum()).tolist(), current=(c / c.sum()).tolist(), edges=bounds.tolist()
    )


def _categorical_drift(
    name: str,
    profile: CategoricalProfile,
    column: ColumnLike,
    thresholds: DriftThresholds,
    alpha: float,
) -> FeatureDrift:
    parsed = categorical_column(column)
    ref_missing = profile.missing / profile.rows if profile.rows else 0.0
    base = FeatureDrift(name, "categorical", "no_data", parsed.rows, parsed.missing, 0, ref_missing)
    if not parsed.counts or profile.present == 0:
        side = "window" if not parsed.counts else "reference"
        return _with(base, notes=[f"no values in the {side}; nothing to compare"])
    known = list(profile.counts)
    unseen = {k: v for k, v in parsed.counts.items() if k not in profile.counts}
    labels = [*known, OTHER]
    ref = np.array([*profile.counts.values(), profile.other], dtype=np.float64)
    cur = np.array([*(parsed.counts.get(k, 0) for k in known), sum(unseen.values())], float)
    chi2 = chi2_homogeneity(ref, cur)
    stats = {
        "chi2": chi2.statistic,
        "chi2_pvalue": chi2.pvalue,
        "psi": psi(ref, cur),
        "js": js_divergence(ref, cur),
    }
    status, reasons = _judge(thresholds, chi2.pvalue, alpha, stats)
    notes = _missing_notes(ref_missing, parsed.missing, 0, parsed.rows)
    if unseen:
        top = sorted(unseen.items(), key=lambda kv: -kv[1])[:5]
        notes.append(
            "categories the reference's top list lacks: "
            + ", ".join(f"{k!r} ({v})" for k, v in top)
        )
    order = np.argsort(-(ref / ref.sum() + cur / cur.sum()), kind="stable")[:PLOT_CATEGORIES]
    plot = Plot(
        reference=(ref[order] / ref.sum()).tolist(),
        current=(cur[order] / cur.sum()).tolist(),
        labels=[labels[i] for i in order],
    )
    return _with(
        base, status=status, statistics=stats, pvalue=chi2.pvalue, reasons=reasons,
        notes=notes, plot=plot,
    )  # fmt: skip


def _missing_notes(ref_share: float, missing: int, invalid: int, rows: int) -> list[str]:
    notes = []
    share = missing / rows if rows else 0.0
    if rows and abs(share - ref_share) >= 0.05:
        notes.append(f"missing share {share:.1%} in the window vs {ref_share:.1%} in reference")
    if invalid:
        notes.append(f"{invalid} value(s) of the wrong type (counted as missing)")
    return notes


def _with(base: FeatureDrift, **changes: Any) -> FeatureDrift:
    return FeatureDrift(**{**base.__dict__, **changes})


def _feature_drift(
    name: str,
    profile: FeatureProfile,
    column: ColumnLike | None,
    thresholds: DriftThresholds,
    alpha: float,
) -> FeatureDrift:
    if column is None:
        return FeatureDrift(
            name, profile.kind, "missing_column",
            notes=["the window has no such column: check the model's input schema"],
        )  # fmt: skip
    if isinstance(profile, NumericProfile):
        return _numeric_drift(name, profile, column, thresholds, alpha)
    return _categorical_drift(name, profile, column, thresholds, alpha)


def window_seed(*parts: str) -> int:
    """A seed derived from the window's identity, so re-running a report gives the same one."""
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big")


def _multivariate(
    profile: ReferenceProfile,
    columns: Mapping[str, ColumnLike],
    alpha: float,
    seed: int,
) -> MultivariateDrift | None:
    sample = profile.sample
    if sample is None or not all(c in columns for c in sample.columns):
        return None
    rows = min(len(columns[c]) for c in sample.columns)
    if rows < 2:
        return None
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(rows, size=min(MMD_ROWS, rows), replace=False))
    # Take the sampled rows before converting: the window itself may be millions of rows.
    taken = [numeric_column(_take(columns[c], picked)).values for c in sample.columns]
    current = sample.standardise(np.column_stack(taken))
    # Enough permutations that the smallest possible p-value sits well below alpha.
    permutations = int(min(MMD_MAX_PERMUTATIONS, max(MMD_PERMUTATIONS, np.ceil(4 / alpha))))
    result = mmd_test(np.asarray(sample.rows), current, permutations=permutations, seed=seed)
    return MultivariateDrift(
        method="mmd-rbf",
        statistic=result.statistic,
        pvalue=result.pvalue,
        columns=list(sample.columns),
        reference_rows=len(sample.rows),
        current_rows=current.shape[0],
        drifted=result.pvalue < alpha,
    )


def _take(column: ColumnLike, rows: NDArray[np.int64]) -> ColumnLike:
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return column.take(pa.array(rows))
    if isinstance(column, np.ndarray):
        return column[rows]
    return [column[i] for i in rows]


def evaluate_drift(
    profile: ReferenceProfile,
    features: Mapping[str, ColumnLike],
    predictions: ColumnLike | None = None,
    *,
    site: str,
    window_start: datetime,
    window_end: datetime,
    settings: DriftSettings | None = None,
) -> DriftReport:
    """Compare a window's `features` (and `predictions`) with `profile`; never raises on odd
    data: empty, short, missing or mistyped columns get a status and a note instead."""
    settings = settings or DriftSettings()
    rows = max((len(c) for c in features.values()), default=0)
    if predictions is not None:
        rows = max(rows, len(predictions))

    def report(status: ReportStatus, **extra: Any) -> DriftReport:
        return DriftReport(
            model=profile.model,
            site=site,
            version=profile.version,
            window_start=window_start,
            window_end=window_end,
            rows=rows,
            status=status,
            significance=settings.significance,
            test_significance=extra.pop("test_significance", settings.significance),
            features=extra.pop("features", []),
            reference_site=profile.site,
            **extra,
        )

    if rows == 0:
        return report("empty", notes=["no captured rows in this window"])
    if rows < settings.min_rows:
        return report(
            "insufficient_data",
            notes=[f"{rows} rows < min_rows {settings.min_rows}: too few to judge drift"],
        )
    use_mmd = settings.multivariate and profile.sample is not None
    # Bonferroni: the univariate tests share the significance (half of it when the MMD test
    # runs, which gets the other half), so a report without drift alarms at most that often.
    share = settings.significance / 2 if use_mmd else settings.significance
    tests = len(profile.features) + (profile.prediction is not None)
    alpha = share / max(tests, 1)

    def feature_alpha(name: str) -> tuple[DriftThresholds, float]:
        thresholds = settings.thresholds(name)
        own = thresholds.significance
        return thresholds, (own / max(tests, 1) if own is not None else alpha)

    verdicts = [
        _feature_drift(name, fp, features.get(name), *feature_alpha(name))
        for name, fp in profile.features.items()
    ]
    prediction = None
    if profile.prediction is not None:
        prediction = _feature_drift(
            PREDICTION, profile.prediction, predictions, *feature_alpha(PREDICTION)
        )
    seed = window_seed(profile.model, site, window_start.isoformat(), window_end.isoformat())
    multivariate = _multivariate(profile, features, share, seed) if use_mmd else None
    unknown = sorted(set(features) - set(profile.features))
    notes = [f"columns not in the reference profile (ignored): {', '.join(unknown)}"] * bool(
        unknown
    )
    draft = report(
        "no_drift",
        features=verdicts,
        prediction=prediction,
        multivariate=multivariate,
        test_significance=alpha,
        notes=notes,
    )
    if draft.drifted:
        return DriftReport(**{**draft.__dict__, "status": "drift"})
    return draft

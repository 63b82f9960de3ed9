"""Reference profiles: what a model version's training data and predictions looked like.

A profile holds, per numeric feature, a quantile sketch (bin edges and counts) and moments;
per categorical feature, the frequencies of its most common categories; the same for the
predictions; and a small standardised sample of rows for the multivariate test. It is plain
JSON (`edgeloop.profile/v1`), never pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from numpy.typing import ArrayLike, NDArray

from edgeloop.errors import MonitoringError
from edgeloop.monitor.columns import (
    ColumnLike,
    Kind,
    categorical_column,
    infer_kind,
    numeric_column,
)
from edgeloop.monitor.stats import DEFAULT_SKETCH_BINS, sketch

PROFILE_FORMAT = "edgeloop.profile/v1"
DEFAULT_MAX_CATEGORIES = 50
DEFAULT_SAMPLE_ROWS = 500
OTHER = "__other__"
MAX_DEVIATIONS = 1e6


@dataclass(frozen=True)
class NumericProfile:
    """A numeric feature's sketch: `counts` has one more entry than `edges` (see stats.numeric)."""

    rows: int
    missing: int
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    discrete: bool = False  # every reference value is one of the edges
    kind: Kind = field(default="numeric", init=False)

    @property
    def present(self) -> int:
        return int(sum(self.counts))

    def edges_array(self) -> NDArray[np.float64]:
        return np.asarray(self.edges, dtype=np.float64)

    def counts_array(self) -> NDArray[np.int64]:
        return np.asarray(self.counts, dtype=np.int64)


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical feature's frequencies: the most common categories, the rest as `other`."""

    rows: int
    missing: int
    counts: dict[str, int]
    other: int = 0
    kind: Kind = field(default="categorical", init=False)

    @property
    def present(self) -> int:
        return sum(self.counts.values()) + self.other


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceSample:
    """Rows of the numeric features, standardised by `mean` and `scale`, missing values at 0."""

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    rows: tuple[tuple[float, ...], ...]

    def standardise(self, matrix: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scale raw rows like the sample's; missing values become the reference mean (0)."""
        out = (matrix - np.asarray(self.mean)) / np.asarray(self.scale)
        # Squared distances between rows further apart than this overflow to inf and turn
        # the whole MMD kernel into NaN; a million deviations is far enough for any verdict.
        return np.clip(np.where(np.isfinite(out), out, 0.0), -MAX_DEVIATIONS, MAX_DEVIATIONS)


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything the drift job compares a window against, for one model version: of its
    training rows from every site, or (`site` set) of one site's rows only."""

    model: str
    version: str
    rows: int
    features: dict[str, FeatureProfile]
    prediction: FeatureProfile | None = None
    sample: ReferenceSample | None = None
    site: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "model": self.model,
            "version": self.version,
            "site": self.site,
            "rows": self.rows,
            "features": {name: _feature_dict(f) for name, f in self.features.items()},
            "prediction": _feature_dict(self.prediction) if self.prediction else None,
            "sample": _sample_dict(self.sample) if self.sample else None,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReferenceProfile:
        """Rebuild a profile; raises MonitoringError naming what is wrong with `raw`."""
        if raw.get("format") != PROFILE_FORMAT:
            raise MonitoringError(
                f"not a reference profile (format {raw.get('format')!r}, expected "
                f"{PROFILE_FORMAT!r}); rebuild it with `edgeloop drift profile`"
            )
        try:
            sample = raw.get("sample")
            prediction = raw.get("prediction")
            site = raw.get("site")
            return cls(
                model=str(raw["model"]),
                version=str(raw["version"]),
                site=None if site is None else str(site),
                rows=int(raw["rows"]),
                features={k: _feature_from(v) for k, v in raw["features"].items()},
                prediction=_feature_from(prediction) if prediction else None,
                sample=_sample_from(sample) if sample else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitoringError(f"reference profile is malformed ({exc!r}); rebuild it") from exc

    @classmethod
    def from_json(cls, raw: bytes | str) -> ReferenceProfile:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MonitoringError(f"reference profile is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise MonitoringError("reference profile must be a JSON object")
        return cls.from_dict(parsed)


def _feature_dict(profile: FeatureProfile) -> dict[str, Any]:
    if isinstance(profile, NumericProfile):
        return {
            "kind": "numeric",
            "rows": profile.rows,
            "missing": profile.missing,
            "edges": list(profile.edges),
            "counts": list(profile.counts),
            "mean": profile.mean,
            "std": profile.std,
            "min": profile.min,
            "max": profile.max,
            "discrete": profile.discrete,
        }
    return {
        "kind": "categorical",
        "rows": profile.rows,
        "missing": profile.missing,
        "counts": profile.counts,
        "other": profile.other,
    }


def _feature_from(raw: Mapping[str, Any]) -> FeatureProfile:
    if raw["kind"] == "numeric":
        edges = tuple(float(e) for e in raw["edges"])
        counts = tuple(int(c) for c in raw["counts"])
        if len(counts) != len(edges) + 1:
            raise ValueError("a numeric sketch needs one more count than edges")
        return NumericProfile(
            rows=int(raw["rows"]),
            missing=int(raw["missing"]),
            edges=edges,
            counts=counts,
            mean=raw.get("mean"),
            std=raw.get("std"),
            min=raw.get("min"),
            max=raw.get("max"),
            discrete=bool(raw.get("discrete", False)),
        )
    if raw["kind"] == "categorical":
        return CategoricalProfile(
            rows=int(raw["rows"]),
            missing=int(raw["missing"]),
            counts={str(k): int(v) for k, v in raw["counts"].items()},
            other=int(raw.get("other", 0)),
        )
    raise ValueError(f"unknown feature kind {raw['kind']!r}")


def _sample_dict(sample: ReferenceSample) -> dict[str, Any]:
    return {
        "columns": list(sample.columns),
        "mean": list(sample.mean),
        "scale": list(sample.scale),
        "rows": [list(r) for r in sample.rows],
    }


def _sample_from(raw: Mapping[str, Any]) -> ReferenceSample:
    return ReferenceSample(
        columns=tuple(raw["columns"]),
        mean=tuple(float(v) for v in raw["mean"]),
        scale=tuple(float(v) for v in raw["scale"]),
        rows=tuple(tuple(float(v) for v in row) for row in raw["rows"]),
    )


def profile_numeric(column: ColumnLike, *, bins: int = DEFAULT_SKETCH_BINS) -> NumericProfile:
    """Sketch one numeric column; a column with no finite value gets an empty sketch."""
    parsed = numeric_column(column)
    data = parsed.values[np.isfinite(parsed.values)]
    missing = parsed.missing + parsed.invalid
    if data.size == 0:
        return NumericProfile(parsed.rows, missing, (), (0,), None, None, None, None)
    edges, counts, discrete = sketch(data, bins)
    return NumericProfile(
        rows=parsed.rows,
        missing=missing,
        edges=tuple(edges.tolist()),
        counts=tuple(counts.tolist()),
        mean=float(data.mean()),
        std=float(data.std()),
        min=float(data.min()),
        max=float(data.max()),
        discrete=discrete,
    )


def profile_categorical(
    column: ColumnLike, *, max_categories: int = DEFAULT_MAX_CATEGORIES
) -> CategoricalProfile:
    """Frequencies of the `max_categories` most common categories; the rest are `other`."""
    parsed = categorical_column(column)
    ranked = sorted(parsed.counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:max_categories])
    other = sum(count for _, count in ranked[max_categories:])
    return CategoricalProfile(parsed.rows, parsed.missing, kept, other)


def profile_column(
    column: ColumnLike,
    kind: Kind | None = None,
    *,
    bins: int = DEFAULT_SKETCH_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> FeatureProfile:
    """Profile `column` as `kind` (inferred from its type when None)."""
    kind = kind or infer_kind(column)
    if kind == "numeric":
        return profile_numeric(column, bins=bins)
    return profile_categorical(column, max_categories=max_categories)


def columns_of(features: pa.Table | Mapping[str, ColumnLike]) -> dict[str, ColumnLike]:
    """The named columns of a table or mapping."""
    if isinstance(features, pa.Table):
        return {name: features.column(name) for name in features.column_names}
    return dict(features)


def tensor_columns(tensor: str, matrix: ArrayLike) -> dict[str, NDArray[np.float64]]:
    """The columns of a [rows, n] matrix named as the drift job names the elements of a served
    input tensor: `tensor[0]` ... `tensor[n-1]`, or just `tensor` when n is 1."""
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise MonitoringError(f"tensor {tensor!r}: expected rows x features, got {values.shape}")
    if values.shape[1] == 1:
        return {tensor: values[:, 0]}
    return {f"{tensor}[{i}]": values[:, i] for i in range(values.shape[1])}


def build_sample(
    columns: Mapping[str, ColumnLike], names: list[str], *, rows: int, seed: int
) -> ReferenceSample | None:
    """A seeded random sample of up to `rows` rows of the numeric `names`, standardised."""
    if len(names) < 2 or rows < 2:
        return None  # one column is already covered by its own univariate tests
    values = [numeric_column(columns[n]).values for n in names]
    total = values[0].size
    if total < 2:
        return None
    # Moments column by column: stacking millions of rows into one matrix is not needed.
    finite_values = [v[np.isfinite(v)] for v in values]
    mean = np.array([v.mean() if v.size else 0.0 for v in finite_values])
    scale = np.array([v.std() if v.size else 1.0 for v in finite_values])
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(total, size=min(rows, total), replace=False))
    sample = ReferenceSample(tuple(names), tuple(mean.tolist()), tuple(scale.tolist()), ())
    standardised = np.round(sample.standardise(np.column_stack([v[picked] for v in values])), 6)
    return ReferenceSample(
        sample.columns, sample.mean, sample.scale, tuple(map(tuple, standardised.tolist()))
    )


def build_profile(
    model: str,
    version: str,
    features: pa.Table | Mapping[str, ColumnLike],
    predictions: ColumnLike | None = None,
    *,
    kinds: Mapping[str, Kind] | None = None,
    bins: int = DEFAULT_SKETCH_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
    site: str | None = None,
) -> ReferenceProfile:
    """Profile a version's training features (and its predictions on them) for drift checks;
    with `site`, the profile describes that site's rows only."""
    columns = columns_of(features)
    if not columns:
        raise MonitoringError("a reference profile needs at least one feature column")
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1:
        raise MonitoringError(f"feature columns differ in length: {sorted(lengths)}")
    kinds = dict(kinds or {})
    profiles = {
        name: profile_column(column, kinds.get(name), bins=bins, max_categories=max_categories)
        for name, column in columns.items()
    }
    prediction = (
        profile_column(predictions, kinds.get("prediction"), bins=bins)
        if predictions is not None
        else None
    )
    numeric = [n for n, p in profiles.items() if isinstance(p, NumericProfile) and p.present]
    return ReferenceProfile(
        model=model,
        version=version,
        rows=lengths.pop(),
        features=profiles,
        prediction=prediction,
        sample=build_sample(columns, numeric, rows=sample_rows, seed=seed),
        site=site,
    )

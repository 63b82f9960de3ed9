"""Numeric drift statistics: quantile sketches, Kolmogorov-Smirnov and Wasserstein distance.

A reference sketch is a set of bin edges (quantiles of the reference) and the reference's
counts in those bins. Counting the current window into the same bins costs one binary search
per value, so a whole window is compared without sorting it or keeping the reference rows.
Bin `0` holds values <= edges[0], bin `i` values in (edges[i-1], edges[i]], and the last
bin values > edges[-1]; the reference itself never lands in the last bin.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import distributions

from edgeloop.errors import EmptySampleError
from edgeloop.monitor.stats.distribution import TestResult

DEFAULT_SKETCH_BINS = 1000


def finite(values: ArrayLike) -> NDArray[np.float64]:
    """The finite values of `values` as float64 (NaN and +-inf are missing, not data)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def quantile_edges(values: ArrayLike, bins: int = DEFAULT_SKETCH_BINS) -> NDArray[np.float64]:
    """Up to `bins + 1` distinct quantiles of `values`, min and max included."""
    data = finite(values)
    if data.size == 0:
        raise EmptySampleError("cannot sketch a feature with no finite values")
    if bins < 1:
        raise ValueError("a sketch needs at least one bin")
    edges = np.quantile(data, np.linspace(0.0, 1.0, bins + 1), method="inverted_cdf")
    return np.unique(edges)


def bin_counts(values: ArrayLike, edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Counts of the finite `values` in the `len(edges) + 1` sketch bins described above."""
    data = finite(values)
    index = np.searchsorted(edges, data, side="left")
    return np.bincount(index, minlength=edges.size + 1).astype(np.int64)


def _cdfs(ref_counts: ArrayLike, cur_counts: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    if ref.shape != cur.shape:
        raise ValueError(f"sketch counts must align; got {ref.shape} and {cur.shape}")
    n, m = ref.sum(), cur.sum()
    if n <= 0 or m <= 0:
        raise EmptySampleError("both samples need at least one finite value")
    return np.cumsum(ref) / n, np.cumsum(cur) / m


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sample KS p-value (scipy's `ks_2samp(method="asymp")`)."""
    if n <= 0 or m <= 0:
        raise EmptySampleError("both samples need at least one finite value")
    if statistic <= 0:
        return 1.0
    effective = max(1.0, np.round(n * m / (n + m)))  # two single values: n*m/(n+m) rounds to 0
    return float(np.clip(distributions.kstwo.sf(statistic, effective), 0.0, 1.0))


def ks_binned(ref_counts: ArrayLike, cur_counts: ArrayLike) -> TestResult:
    """Two-sample KS on sketch counts: the largest CDF gap at the edges (<= the exact one).

    Measuring only at the edges can miss part of the gap, so the test errs towards "no
    drift": its false-positive rate stays within the significance.
    """
    f_ref, f_cur = _cdfs(ref_counts, cur_counts)
    statistic = float(np.max(np.abs(f_ref - f_cur)))
    n = int(np.asarray(ref_counts).sum())
    m = int(np.asarray(cur_counts).sum())
    return TestResult(statistic, ks_pvalue(statistic, n, m))


def ks_2samp(reference: ArrayLike, current: ArrayLike) -> TestResult:
    """Exact two-sample KS statistic of raw samples, with the asymptotic p-value."""
    ref = np.sort(finite(reference))
    cur = np.sort(finite(current))
    if ref.size == 0 or cur.size == 0:
        raise EmptySampleError("both samples need at least one finite value")
    points = np.concatenate([ref, cur])
    gap = np.searchsorted(ref, points, side="right") / ref.size
    gap -= np.searchsorted(cur, points, side="right") / cur.size
    statistic = float(np.max(np.abs(gap)))
    return TestResult(statistic, ks_pvalue(statistic, ref.size, cur.size))


def wasserstein(reference: ArrayLike, current: ArrayLike) -> float:
    """Exact 1-Wasserstein (earth mover's) distance between two raw samples."""
    ref = np.sort(finite(reference))
    cur = np.sort(finite(current))
    if ref.size == 0 or cur.size == 0:
        raise EmptySampleError("both samples need at least one finite value")
    points = np.unique(np.concatenate([ref, cur]))
    f_ref = np.searchsorted(ref, points[:-1], side="right") / ref.size
    f_cur = np.searchsorted(cur, points[:-1], side="right") / cur.size
    return float(np.sum(np.abs(f_ref - f_cur) * np.diff(points)))


def tail_excess(values: ArrayLike, edges: NDArray[np.float64]) -> tuple[float, float]:
    """Total distance of the finite `values` below edges[0] and above edges[-1]."""
    data = finite(values)
    below = float(np.sum(np.maximum(edges[0] - data, 0.0)))
    above = float(np.sum(np.maximum(data - edges[-1], 0.0)))
    return below, above


def wasserstein_binned(
    edges: NDArray[np.float64],
    ref_counts: ArrayLike,
    cur_counts: ArrayLike,
    *,
    below: float = 0.0,
    above: float = 0.0,
) -> float:
    """1-Wasserstein distance from sketch counts, taking values as uniform within each bin.

    Outside the reference's range its CDF is flat (0 or 1), so that part of the distance is
    exact: the current values' total distance past the range (`tail_excess`) over their count.
    """
    f_ref, f_cur = _cdfs(ref_counts, cur_counts)
    m = float(np.asarray(cur_counts).sum())
    # The gap is known exactly at every edge; between edges it is linear, so its absolute
    # integral is a trapezoid, or two triangles when it changes sign inside the bin.
    gap = (f_ref - f_cur)[:-1]
    a, b = gap[:-1], gap[1:]
    width = np.diff(edges)
    same_sign = a * b >= 0
    trapezoid = (np.abs(a) + np.abs(b)) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = (a**2 + b**2) / (2 * np.abs(a - b))
    inside = float(np.sum(np.where(same_sign, trapezoid, crossing) * width))
    return inside + (below + above) / m

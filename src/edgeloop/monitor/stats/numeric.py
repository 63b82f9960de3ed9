"""Numeric drift statistics: quantile sketches, Kolmogorov-Smirnov and Wasserstein distance.

A reference sketch is a set of bin edges (quantiles of the reference) and the reference's
counts in those bins. Counting the current window into the same bins costs one binary search
per value, so a whole window is compared without sorting it or keeping the reference rows.
Bin `0` holds values <= edges[0], bin `i` values in (edges[i-1], edges[i]], and the last
bin values > edges[-1]; the reference itself never lands in the last bin.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import distributions

from edgeloop.errors import EmptySampleError
from edgeloop.monitor.stats.distribution import TestResult

DEFAULT_SKETCH_BINS = 1000
_FLOAT_MAX = float(np.finfo(np.float64).max)


def finite(values: ArrayLike) -> NDArray[np.float64]:
    """The finite values of `values` as float64 (NaN and +-inf are missing, not data)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    keep = np.isfinite(arr)
    return arr if keep.all() else arr[keep]  # already clean: no 8-bytes-a-row copy


class Sketch(NamedTuple):
    """Bin edges, the counts in the `len(edges) + 1` bins, and whether every value is an edge."""

    edges: NDArray[np.float64]
    counts: NDArray[np.int64]
    discrete: bool


def sketch(values: ArrayLike, bins: int = DEFAULT_SKETCH_BINS) -> Sketch:
    """Edges (up to `bins + 1` distinct quantiles) and the counts of `values` in their bins,
    from one sort. With at most `bins + 1` distinct values, every value is an edge."""
    data = np.sort(finite(values))
    if data.size == 0:
        raise EmptySampleError("cannot sketch a feature with no finite values")
    if bins < 1:
        raise ValueError("a sketch needs at least one bin")
    new_value = np.concatenate([[True], data[1:] != data[:-1]])
    discrete = int(new_value.sum()) <= bins + 1
    if discrete:
        edges = data[new_value]
    else:
        # Quantiles by the inverted empirical CDF: the value at rank ceil(p * n).
        ranks = np.ceil(np.linspace(0.0, 1.0, bins + 1) * data.size).astype(np.int64) - 1
        edges = np.unique(data[np.clip(ranks, 0, data.size - 1)])
    # Counts of (edges[i-1], edges[i]] are differences of "how many values <= edge".
    at_or_below = np.searchsorted(data, edges, side="right")
    counts = np.diff(np.concatenate([[0], at_or_below, [data.size]]))
    return Sketch(edges, counts.astype(np.int64), discrete)


def quantile_edges(values: ArrayLike, bins: int = DEFAULT_SKETCH_BINS) -> NDArray[np.float64]:
    """Up to `bins + 1` distinct quantiles of `values`, min and max included."""
    return sketch(values, bins).edges


def bin_counts_both(
    values: ArrayLike, edges: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """`bin_counts` and `bin_counts_open` together, for the price of one search."""
    data = finite(values)
    index = edge_index(data, edges, "left")
    on_edge = np.append(edges, np.inf)[index] == data
    closed = np.bincount(index, minlength=edges.size + 1).astype(np.int64)
    open_ = np.bincount(index + on_edge, minlength=edges.size + 1).astype(np.int64)
    return closed, open_


def bin_counts_open(values: ArrayLike, edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Like `bin_counts` but with bins [edges[i-1], edges[i]): cumulated, they give the share
    of values strictly below each edge (needed where values sit exactly on edges)."""
    index = edge_index(finite(values), edges, "right")
    return np.bincount(index, minlength=edges.size + 1).astype(np.int64)


def edge_index(
    data: NDArray[np.float64], edges: NDArray[np.float64], side: Literal["left", "right"]
) -> NDArray[np.int64]:
    """`np.searchsorted(edges, data, side)` for finite `data`, about 3x faster on big inputs.

    A binary search per value misses the cache at every step. Instead a uniform grid over
    the edges' range says where each value's search starts, and a few vectorized passes
    step over the edges inside its grid cell; values left after a few passes (edges bunched
    into one cell) fall back to the binary search.
    """
    k = edges.size
    if k < 64 or data.size < 4096:
        return np.searchsorted(edges, data, side=side).astype(np.int64)
    # The grid spans the central edges only, so one far outlier cannot stretch it; values
    # beyond it are searched among the few outer edges.
    outer = k // 64
    low, high = float(edges[outer]), float(edges[k - 1 - outer])
    span = high - low
    if not np.isfinite(span) or span <= 0:
        return np.searchsorted(edges, data, side=side).astype(np.int64)
    cells = 4 * k
    scale = cells / span
    starts = np.searchsorted(edges, low + np.arange(cells) / scale, side="left")
    starts[0] = 0
    cell = (data - low) * scale
    np.clip(cell, 0, cells - 1, out=cell)
    index = starts[cell.astype(np.int64)]
    padded = np.append(edges, np.inf)
    step = np.less if side == "left" else np.less_equal
    beyond = (data < low) | (data > high)
    active = np.flatnonzero(step(padded[index], data) & ~beyond)
    for _ in range(8):
        if active.size == 0:
            break
        index[active] += 1
        active = active[step(padded[index[active]], data[active])]
    if active.size:
        index[active] = np.searchsorted(edges, data[active], side=side)
    if beyond.any():
        below = np.flatnonzero(data < low)
        index[below] = np.searchsorted(edges[: outer + 1], data[below], side=side)
        above = np.flatnonzero(data > high)
        tail = edges[k - 1 - outer :]
        index[above] = k - 1 - outer + np.searchsorted(tail, data[above], side=side)
    return index


def bin_counts(values: ArrayLike, edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Counts of the finite `values` in the `len(edges) + 1` sketch bins described above."""
    index = edge_index(finite(values), edges, "left")
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


def finite_mean(values: NDArray[np.float64]) -> float:
    """Mean of finite values that cannot overflow: each value is scaled before the sum."""
    return float(np.sum(values / values.size))


def capped(value: float) -> float:
    """`value` with overflow to infinity capped at the largest float, so JSON stays finite."""
    return max(min(value, _FLOAT_MAX), -_FLOAT_MAX)


def tail_excess(values: ArrayLike, edges: NDArray[np.float64]) -> tuple[float, float]:
    """Total distance of the finite `values` below edges[0] and above edges[-1]."""
    data = finite(values)
    low, high = data[data < edges[0]], data[data > edges[-1]]
    # Values near the float limit overflow a plain sum; a distance that large is capped at
    # the largest float so reports stay finite JSON (it drifts either way).
    with np.errstate(over="ignore"):
        below, above = float(np.sum(edges[0] - low)), float(np.sum(high - edges[-1]))
    return capped(below), capped(above)


def wasserstein_binned(
    edges: NDArray[np.float64],
    ref_counts: ArrayLike,
    cur_counts: ArrayLike,
    *,
    below: float = 0.0,
    above: float = 0.0,
    ref_on_edges: bool = False,
    cur_open_counts: ArrayLike | None = None,
) -> float:
    """1-Wasserstein distance from sketch counts, taking values as uniform within each bin.

    Outside the reference's range its CDF is flat (0 or 1), so that part of the distance is
    exact: the current values' total distance past the range (`tail_excess`) over their count.
    For discrete data, `ref_on_edges` (every reference value is an edge) and the window's
    `cur_open_counts` (from `bin_counts_open`) make the CDFs' jumps at the edges exact.
    """
    f_ref, f_cur = _cdfs(ref_counts, cur_counts)
    m = float(np.asarray(cur_counts).sum())
    # Between two edges the gap runs from its value at the left edge to its limit just
    # before the right edge, linearly; the absolute integral of a linear gap is a trapezoid,
    # or two triangles when it changes sign inside the bin.
    a = (f_ref - f_cur)[:-2]
    ref_before = f_ref[:-2] if ref_on_edges else f_ref[1:-1]
    if cur_open_counts is not None:
        cur_before = (np.cumsum(np.asarray(cur_open_counts, dtype=np.float64)) / m)[1:-1]
    else:
        cur_before = f_cur[1:-1]
    b = ref_before - cur_before
    width = np.diff(edges)
    same_sign = a * b >= 0
    trapezoid = (np.abs(a) + np.abs(b)) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = (a**2 + b**2) / (2 * np.abs(a - b))
    inside = float(np.sum(np.where(same_sign, trapezoid, crossing) * width))
    return capped(inside + below / m + above / m)

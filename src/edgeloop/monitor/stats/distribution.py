"""Statistics over two count vectors on the same bins or categories: PSI, Jensen-Shannon, chi2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from edgeloop.errors import EmptySampleError

# PSI's usual floor for an empty bin: without it one empty bin makes the index infinite.
PSI_EPSILON = 1e-4


@dataclass(frozen=True, slots=True)
class TestResult:
    """A test statistic with its p-value (the chance of a value this large with no drift)."""

    statistic: float
    pvalue: float

    __test__ = False  # not a pytest test class, despite the name


def _pair(reference: ArrayLike, current: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 1:
        raise ValueError(f"count vectors must be 1-D and aligned; got {ref.shape} and {cur.shape}")
    if (
        np.any(ref < 0)
        or np.any(cur < 0)
        or not (np.isfinite(ref).all() and np.isfinite(cur).all())
    ):
        raise ValueError("counts must be finite and non-negative")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise EmptySampleError("both samples need at least one counted value")
    return ref, cur


def shares(counts: ArrayLike) -> NDArray[np.float64]:
    """Counts as fractions of their total (all zeros stay zeros)."""
    arr = np.asarray(counts, dtype=np.float64)
    total = arr.sum()
    return arr / total if total > 0 else arr


def psi(reference: ArrayLike, current: ArrayLike, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two count vectors: sum((c - r) * ln(c / r)), always >= 0."""
    ref, cur = _pair(reference, current)
    r = np.maximum(ref / ref.sum(), epsilon)
    c = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def js_divergence(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen-Shannon divergence in bits of two count vectors: symmetric, in [0, 1]."""
    ref, cur = _pair(reference, current)
    p = ref / ref.sum()
    q = cur / cur.sum()
    m = (p + q) / 2
    # rel_entr is 0 where the left share is 0, so absent categories need no special case.
    value = (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / (2 * np.log(2))
    return float(min(max(value, 0.0), 1.0))


def chi2_homogeneity(reference: ArrayLike, current: ArrayLike) -> TestResult:
    """Pearson chi-squared test that two count vectors come from one categorical distribution."""
    ref, cur = _pair(reference, current)
    used = (ref + cur) > 0
    ref, cur = ref[used], cur[used]
    if ref.size < 2:
        return TestResult(0.0, 1.0)  # a single category cannot differ in distribution
    table = np.vstack([ref, cur])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = ref.size - 1
    return TestResult(statistic, float(special.chdtrc(dof, statistic)))

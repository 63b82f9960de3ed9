"""The drift statistics: agreement with scipy, power on known shifts, false-positive rates
within the significance over many seeded draws, and invariants as Hypothesis properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from edgeloop.errors import EmptySampleError
from edgeloop.monitor.stats import (
    bin_counts,
    bin_counts_open,
    chi2_homogeneity,
    js_divergence,
    ks_2samp,
    ks_binned,
    mmd_test,
    psi,
    quantile_edges,
    tail_excess,
    wasserstein,
    wasserstein_binned,
)

ALPHA = 0.05
DRAWS = 300


def rejection_bound(draws: int, alpha: float) -> float:
    """The most rejections a correct level-alpha test makes in `draws` draws, bar a 1-in-10^4
    fluke: the binomial's 0.9999 quantile, as a rate."""
    return float(sps.binom.ppf(0.9999, draws, alpha)) / draws


# --- agreement with scipy on small inputs -------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_exact_ks_and_wasserstein_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=int(rng.integers(5, 60)))
    y = rng.normal(0.3, 1.5, size=int(rng.integers(5, 60)))
    ours = ks_2samp(x, y)
    ref = sps.ks_2samp(x, y, method="asymp")
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
    assert wasserstein(x, y) == pytest.approx(sps.wasserstein_distance(x, y), rel=1e-9)


def test_ks_with_ties_matches_scipy() -> None:
    x = np.array([1, 1, 2, 2, 2, 3, 5, 5], dtype=float)
    y = np.array([1, 2, 3, 3, 4, 5, 5, 5, 6], dtype=float)
    assert ks_2samp(x, y).statistic == pytest.approx(sps.ks_2samp(x, y).statistic)
    assert wasserstein(x, y) == pytest.approx(sps.wasserstein_distance(x, y))


@pytest.mark.parametrize("seed", range(5))
def test_chi2_and_js_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 8))
    ref = rng.integers(0, 50, size=k).astype(float) + 1
    cur = rng.integers(0, 50, size=k).astype(float) + 1
    ours = chi2_homogeneity(ref, cur)
    statistic, pvalue, *_ = sps.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert ours.statistic == pytest.approx(statistic, rel=1e-9)
    assert ours.pvalue == pytest.approx(pvalue, rel=1e-9, abs=1e-15)
    assert js_divergence(ref, cur) == pytest.approx(jensenshannon(ref, cur, base=2) ** 2, abs=1e-12)


def test_psi_matches_its_formula() -> None:
    ref = np.array([10.0, 20, 30, 40])
    cur = np.array([25.0, 25, 25, 25])
    r, c = ref / ref.sum(), cur / cur.sum()
    assert psi(ref, cur) == pytest.approx(np.sum((c - r) * np.log(c / r)))


def test_sketch_is_exact_when_edges_hold_every_value() -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 30, size=200).astype(float)
    y = rng.integers(5, 40, size=150).astype(float)
    edges = np.unique(np.concatenate([x, y]))
    binned = ks_binned(bin_counts(x, edges), bin_counts(y, edges))
    assert binned.statistic == pytest.approx(sps.ks_2samp(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0, 4.0])
def test_sketch_tracks_exact_statistics_on_continuous_data(shift: float) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=50_000)
    y = rng.normal(shift, 1.3, size=40_000)
    edges = quantile_edges(x, 1000)
    ref, cur = bin_counts(x, edges), bin_counts(y, edges)
    exact_ks = sps.ks_2samp(x, y).statistic
    binned = ks_binned(ref, cur).statistic
    assert binned <= exact_ks + 1e-12  # measured at the edges only: never above the exact value
    assert binned == pytest.approx(exact_ks, abs=3e-3)
    below, above = tail_excess(y, edges)
    approx_w = wasserstein_binned(edges, ref, cur, below=below, above=above)
    assert approx_w == pytest.approx(sps.wasserstein_distance(x, y), rel=0.03, abs=5e-3)


# --- each statistic detects a known shift ---------------------------------------------------


def test_numeric_statistics_detect_a_mean_shift_and_not_its_absence() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=5000)
    same = rng.normal(size=3000)
    shifted = rng.normal(0.5, 1.0, size=3000)
    edges = quantile_edges(reference, 1000)
    ref = bin_counts(reference, edges)
    for window, drifted in ((same, False), (shifted, True)):
        cur = bin_counts(window, edges)
        ks = ks_binned(ref, cur)
        below, above = tail_excess(window, edges)
        w = wasserstein_binned(edges, ref, cur, below=below, above=above)
        deciles = quantile_edges(reference, 10)
        p = psi(bin_counts(reference, deciles), bin_counts(window, deciles))
        assert (ks.pvalue < 0.001) is drifted
        assert (w > 0.25) is drifted
        assert (p > 0.2) is drifted


def test_numeric_statistics_detect_a_change_of_spread() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=5000)
    wider = rng.normal(0.0, 2.0, size=3000)  # same mean: a mean check would miss this
    edges = quantile_edges(reference, 1000)
    assert ks_binned(bin_counts(reference, edges), bin_counts(wider, edges)).pvalue < 1e-6


def test_categorical_statistics_detect_a_mix_shift() -> None:
    rng = np.random.default_rng(3)
    base = rng.multinomial(5000, [0.5, 0.3, 0.2])
    same = rng.multinomial(3000, [0.5, 0.3, 0.2])
    shifted = rng.multinomial(3000, [0.3, 0.3, 0.4])
    assert chi2_homogeneity(base, same).pvalue > 0.01
    assert chi2_homogeneity(base, shifted).pvalue < 1e-6
    assert js_divergence(base, same) < 0.01 < js_divergence(base, shifted)
    assert psi(base, same) < 0.02 < 0.1 < psi(base, shifted)


def test_mmd_detects_a_correlation_change_the_marginals_hide() -> None:
    rng = np.random.default_rng(4)
    independent = rng.normal(size=(300, 2))
    z = rng.normal(size=300)
    correlated = np.column_stack([z, z * 0.95 + rng.normal(scale=0.3, size=300)])
    correlated /= correlated.std(axis=0)
    # Each column alone is still standard normal: the univariate KS sees nothing.
    assert ks_2samp(independent[:, 0], correlated[:, 0]).pvalue > 0.01
    assert mmd_test(independent, correlated, permutations=300, seed=1).pvalue < 0.01
    assert mmd_test(independent, rng.normal(size=(300, 2)), seed=1).pvalue > 0.01


# --- false-positive rates on same-distribution samples ----------------------------------------


def test_ks_false_positive_rate_within_significance() -> None:
    rng = np.random.default_rng(100)
    reference = rng.normal(size=2000)
    edges = quantile_edges(reference, 1000)
    ref = bin_counts(reference, edges)
    rejections = sum(
        ks_binned(ref, bin_counts(rng.normal(size=500), edges)).pvalue < ALPHA for _ in range(DRAWS)
    )
    assert rejections / DRAWS <= rejection_bound(DRAWS, ALPHA)


def test_exact_ks_false_positive_rate_within_significance() -> None:
    rng = np.random.default_rng(101)
    rejections = sum(
        ks_2samp(rng.exponential(size=300), rng.exponential(size=200)).pvalue < ALPHA
        for _ in range(DRAWS)
    )
    assert rejections / DRAWS <= rejection_bound(DRAWS, ALPHA)


def test_chi2_false_positive_rate_within_significance() -> None:
    rng = np.random.default_rng(102)
    mix = [0.4, 0.3, 0.2, 0.1]
    ref = rng.multinomial(3000, mix)
    rejections = sum(
        chi2_homogeneity(ref, rng.multinomial(400, mix)).pvalue < ALPHA for _ in range(DRAWS)
    )
    assert rejections / DRAWS <= rejection_bound(DRAWS, ALPHA)


def test_mmd_false_positive_rate_within_significance() -> None:
    rng = np.random.default_rng(103)
    draws = 100
    rejections = sum(
        mmd_test(rng.normal(size=(60, 3)), rng.normal(size=(60, 3)), permutations=100, seed=i)
        .pvalue < ALPHA
        for i in range(draws)
    )  # fmt: skip
    assert rejections / draws <= rejection_bound(draws, ALPHA)


# --- empty and degenerate inputs ------------------------------------------------------------


def test_empty_samples_raise_a_clear_error() -> None:
    with pytest.raises(EmptySampleError):
        ks_2samp([], [1.0])
    with pytest.raises(EmptySampleError):
        wasserstein([np.nan, np.inf], [1.0])
    with pytest.raises(EmptySampleError):
        psi([0, 0], [1, 2])
    with pytest.raises(EmptySampleError):
        quantile_edges([np.nan])
    with pytest.raises(EmptySampleError):
        mmd_test(np.zeros((1, 2)), np.zeros((5, 2)))


def test_nan_and_inf_are_missing_not_data() -> None:
    assert ks_2samp([1.0, 2.0, np.nan], [1.0, 2.0, np.inf]).statistic == 0.0
    edges = quantile_edges([1.0, 2.0, np.nan, 3.0])
    assert bin_counts([np.nan, 2.0], edges).sum() == 1


def test_constant_reference_still_compares() -> None:
    edges = quantile_edges(np.full(100, 5.0))
    ref = bin_counts(np.full(100, 5.0), edges)
    cur = bin_counts(np.array([5.0, 6.0, 7.0, 5.0]), edges)
    assert ks_binned(ref, cur).statistic == pytest.approx(0.5)
    assert wasserstein_binned(
        edges,
        ref,
        cur,
        **dict(zip(("below", "above"), tail_excess([5.0, 6.0, 7.0, 5.0], edges), strict=True)),
    ) == pytest.approx(0.75)
    assert chi2_homogeneity([10, 0], [5, 0]).pvalue == 1.0


def test_misaligned_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="aligned"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        js_divergence([1, -1], [1, 1])


# --- invariants -----------------------------------------------------------------------------

counts = st.lists(st.integers(0, 1000), min_size=2, max_size=12).filter(lambda c: sum(c) > 0)
samples = arrays(
    np.float64, st.integers(1, 80), elements=st.floats(-1e6, 1e6, allow_nan=False, width=64)
)


@given(data=st.data(), k=st.integers(2, 12))
def test_count_statistics_invariants(data: st.DataObject, k: int) -> None:
    ref = data.draw(counts.filter(lambda c: len(c) == k) | st.just([1] * k))
    cur = data.draw(st.lists(st.integers(0, 1000), min_size=k, max_size=k).filter(sum))
    assert psi(ref, cur) >= 0
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    js = js_divergence(ref, cur)
    assert 0.0 <= js <= 1.0
    assert js == pytest.approx(js_divergence(cur, ref), abs=1e-12)
    chi2 = chi2_homogeneity(ref, cur)
    assert chi2.statistic >= -1e-9
    assert 0.0 <= chi2.pvalue <= 1.0
    assert chi2_homogeneity(ref, cur).statistic == pytest.approx(
        chi2_homogeneity(cur, ref).statistic, rel=1e-9, abs=1e-9
    )


@given(x=samples, y=samples)
@settings(max_examples=60)
def test_sample_statistics_invariants(x: np.ndarray, y: np.ndarray) -> None:
    ks = ks_2samp(x, y)
    assert 0.0 <= ks.statistic <= 1.0
    assert 0.0 <= ks.pvalue <= 1.0
    assert ks.statistic == pytest.approx(ks_2samp(y, x).statistic, abs=1e-12)
    assert ks_2samp(x, x).statistic == 0.0
    w = wasserstein(x, y)
    assert w >= 0.0
    assert w == pytest.approx(wasserstein(y, x), rel=1e-9, abs=1e-9)
    assert wasserstein(x, x + 3.0) == pytest.approx(3.0, rel=1e-6, abs=1e-6)


@given(x=samples, y=samples, bins=st.integers(1, 50))
@settings(max_examples=60)
def test_sketch_invariants(x: np.ndarray, y: np.ndarray, bins: int) -> None:
    edges = quantile_edges(x, bins)
    ref = bin_counts(x, edges)
    cur = bin_counts(y, edges)
    assert ref.sum() == x.size and cur.sum() == y.size
    assert ref[-1] == 0  # the reference never lands above its own maximum
    binned = ks_binned(ref, cur)
    assert 0.0 <= binned.statistic <= ks_2samp(x, y).statistic + 1e-12
    assert ks_binned(ref, ref).statistic == 0.0
    below, above = tail_excess(y, edges)
    w = wasserstein_binned(edges, ref, cur, below=below, above=above)
    assert w >= 0.0


def test_sketch_wasserstein_is_exact_on_discrete_data() -> None:
    rng = np.random.default_rng(12)
    x = rng.integers(0, 50, size=5000).astype(float)
    y = rng.integers(3, 60, size=4000).astype(float)
    edges = quantile_edges(x, 1000)
    assert edges.size == np.unique(x).size  # every reference value is an edge
    below, above = tail_excess(y, edges)
    approx_w = wasserstein_binned(
        edges, bin_counts(x, edges), bin_counts(y, edges), below=below, above=above,
        ref_on_edges=True, cur_open_counts=bin_counts_open(y, edges),
    )  # fmt: skip
    assert approx_w == pytest.approx(sps.wasserstein_distance(x, y), rel=1e-9)


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: rng.normal(size=20_000),
        lambda rng: rng.exponential(size=20_000) ** 3,  # heavy right tail
        lambda rng: np.append(rng.normal(size=19_999), 1e12),  # one far outlier
        lambda rng: np.round(rng.normal(size=20_000), 1),  # ties
        lambda rng: rng.normal(4.0, 0.1, size=20_000),  # mostly beyond the reference
    ],
)
def test_fast_edge_index_equals_binary_search(draw: object) -> None:
    from edgeloop.monitor.stats.numeric import edge_index

    rng = np.random.default_rng(21)
    reference = draw(rng)  # type: ignore[operator]
    window = np.concatenate([draw(rng), rng.normal(size=5000) * 1e3])  # type: ignore[operator]
    edges = quantile_edges(reference, 1000)
    for side in ("left", "right"):
        assert np.array_equal(edge_index(window, edges, side), np.searchsorted(edges, window, side))


@given(x=samples, bins=st.integers(1, 40))
@settings(max_examples=60)
def test_one_sort_sketch_matches_numpy_quantiles_and_binning(x: np.ndarray, bins: int) -> None:
    from edgeloop.monitor.stats import sketch

    edges, counts, discrete = sketch(x, bins)
    if discrete:
        assert np.array_equal(edges, np.unique(x))
    else:
        expected = np.quantile(x, np.linspace(0, 1, bins + 1), method="inverted_cdf")
        assert np.array_equal(edges, np.unique(expected))
    assert np.array_equal(counts, bin_counts(x, edges))


@given(x=samples, y=samples, bins=st.integers(1, 40))
@settings(max_examples=40)
def test_both_counts_in_one_search(x: np.ndarray, y: np.ndarray, bins: int) -> None:
    from edgeloop.monitor.stats import bin_counts_both

    edges = quantile_edges(x, bins)
    window = np.concatenate([y, x, np.repeat(edges, 3)])  # many values exactly on edges
    closed, open_ = bin_counts_both(window, edges)
    assert np.array_equal(closed, bin_counts(window, edges))
    assert np.array_equal(open_, bin_counts_open(window, edges))

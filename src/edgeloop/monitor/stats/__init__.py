"""Pure, vectorized drift statistics (numpy and scipy's special functions; no I/O)."""

from edgeloop.monitor.stats.distribution import (
    PSI_EPSILON,
    TestResult,
    chi2_homogeneity,
    js_divergence,
    psi,
    shares,
)
from edgeloop.monitor.stats.multivariate import mmd_test
from edgeloop.monitor.stats.numeric import (
    DEFAULT_SKETCH_BINS,
    bin_counts,
    bin_counts_both,
    bin_counts_open,
    capped,
    finite,
    finite_mean,
    ks_2samp,
    ks_binned,
    ks_pvalue,
    quantile_edges,
    sketch,
    tail_excess,
    wasserstein,
    wasserstein_binned,
)

__all__ = [
    "DEFAULT_SKETCH_BINS",
    "PSI_EPSILON",
    "TestResult",
    "bin_counts",
    "bin_counts_both",
    "bin_counts_open",
    "capped",
    "chi2_homogeneity",
    "finite",
    "finite_mean",
    "js_divergence",
    "ks_2samp",
    "ks_binned",
    "ks_pvalue",
    "mmd_test",
    "psi",
    "quantile_edges",
    "shares",
    "sketch",
    "tail_excess",
    "wasserstein",
    "wasserstein_binned",
]

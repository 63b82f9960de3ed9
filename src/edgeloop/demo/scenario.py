"""The demo's world: machines at two edge sites report four sensor readings, and the model
predicts whether a machine needs maintenance. Pure: random generators in, numbers out.

The truth is `vibration + 0.5 * temperature + 2 * load + noise > 0`. Before the drift, `load`
barely moves (a fixed production line), so a model trained then learns little about it.
The drift: at one site a new line starts, `load` varies widely and tips many machines into
needing maintenance; the relation the old model learned between what it watches and the
label no longer holds there (concept drift from the model's point of view), and its
accuracy at that site drops until a model retrained on the new data is rolled out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL = "maintenance"
FEATURES = ("vibration", "temperature", "load", "humidity")
LABELS = ("0", "1")


@dataclass(frozen=True)
class SiteRegime:
    """How one site's machines look: the mean and spread of `load`."""

    load_mean: float = 0.0
    load_std: float = 0.05


STEADY = SiteRegime()
DRIFTED = SiteRegime(load_mean=0.6, load_std=1.0)


def sample(rng: np.random.Generator, rows: int, regime: SiteRegime) -> np.ndarray:
    """`rows` feature rows (float32, one column per FEATURES entry)."""
    x = rng.normal(size=(rows, len(FEATURES)))
    x[:, 2] = rng.normal(regime.load_mean, regime.load_std, size=rows)
    return x.astype(np.float32)


def truth(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """The true label (0 or 1) of each row, with a little label noise."""
    score = x[:, 0] + 0.5 * x[:, 1] + 2.0 * x[:, 2] + rng.normal(0.0, 0.15, size=len(x))
    return (score > 0).astype(np.int64)

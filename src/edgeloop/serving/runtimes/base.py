"""The interface every runtime implements, and the options they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RuntimeOptions:
    """Tuning knobs: onnxruntime thread pools, and extra skops types a site chose to trust."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    trusted_types: tuple[str, ...] = field(default_factory=tuple)


class ModelRuntime(Protocol):
    """A loaded model: named input arrays in, named output arrays out."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

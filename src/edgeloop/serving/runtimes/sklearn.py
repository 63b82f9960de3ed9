"""The scikit-learn runtime: skops files loaded with an explicit allowlist of types."""

from __future__ import annotations

from typing import Any

import numpy as np
import skops.io as sio

from edgeloop.errors import PackageError, UntrustedModel
from edgeloop.serving.oip import NUMPY_DTYPES
from edgeloop.serving.package import LoadedPackage
from edgeloop.serving.runtimes.base import RuntimeOptions

# Types skops does not trust by default but that hold only data (no code paths to run).
ALLOWED_TYPES = frozenset({"sklearn.tree._tree.Tree"})


def check_types(path: Any, extra: tuple[str, ...] = ()) -> list[str]:
    """The untrusted types the skops file holds, after refusing any outside the allowlist."""
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a corrupt zip or schema: skops raises many kinds
        raise PackageError(f"{path}: not a readable skops file: {exc}") from None
    refused = sorted(set(untrusted) - ALLOWED_TYPES - set(extra))
    if refused:
        raise UntrustedModel(
            f"{path}: holds types outside the allowlist: {', '.join(refused)}; re-export the "
            "model to ONNX, or, if you trust them, name them with --trust-type"
        )
    return list(untrusted)


class SklearnRuntime:
    """Serves a scikit-learn estimator: `label` from predict, `probabilities` from
    predict_proba, `predictions` (regression) from predict."""

    def __init__(self, package: LoadedPackage, options: RuntimeOptions) -> None:
        trusted = check_types(package.model_path, options.trusted_types)
        try:
            self.estimator = sio.load(package.model_path, trusted=trusted)
        except Exception as exc:
            raise PackageError(f"{package.model_path}: skops cannot load it: {exc}") from None
        manifest = package.manifest
        self.input_name = manifest.inputs[0].name
        self.outputs = [(spec.name, spec.datatype) for spec in manifest.outputs]
        for name, _ in self.outputs:
            if name == "probabilities" and not hasattr(self.estimator, "predict_proba"):
                raise PackageError(f"{package.root}: the estimator has no predict_proba")

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        features = inputs[self.input_name]
        result: dict[str, np.ndarray] = {}
        for name, datatype in self.outputs:
            dtype = NUMPY_DTYPES[datatype]
            if name == "probabilities":
                result[name] = np.asarray(self.estimator.predict_proba(features), dtype=dtype)
            else:
                predicted = np.asarray(self.estimator.predict(features), dtype=dtype)
                if name == "predictions" and predicted.ndim == 1:
                    predicted = predicted.reshape(-1, 1)  # one column, as the ONNX form has
                result[name] = predicted
        return result

    def close(self) -> None:
        del self.estimator

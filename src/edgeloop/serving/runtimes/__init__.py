"""Model runtimes: turn a checked package into something that maps input arrays to outputs."""

from __future__ import annotations

from edgeloop.errors import PackageError
from edgeloop.model.manifest import Runtime
from edgeloop.serving.package import LoadedPackage
from edgeloop.serving.runtimes.base import ModelRuntime, RuntimeOptions


def open_runtime(package: LoadedPackage, options: RuntimeOptions | None = None) -> ModelRuntime:
    """The runtime the package's manifest asks for, loaded from its model file."""
    options = options or RuntimeOptions()
    runtime = package.manifest.runtime
    if runtime == Runtime.ONNX:
        from edgeloop.serving.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(package, options)
    if runtime == Runtime.SKLEARN:
        from edgeloop.serving.runtimes.sklearn import SklearnRuntime

        return SklearnRuntime(package, options)
    raise PackageError(f"{package.root}: no runtime serves {runtime!r}")  # pragma: no cover


__all__ = ["ModelRuntime", "RuntimeOptions", "open_runtime"]

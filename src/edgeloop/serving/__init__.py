"""Edge inference: model packages, runtimes, the Open Inference Protocol v2 server, hot swap,
micro-batching, data capture and metrics."""

from edgeloop.serving.package import LoadedPackage, load_package
from edgeloop.serving.packaging import package_estimator

__all__ = ["LoadedPackage", "load_package", "package_estimator"]

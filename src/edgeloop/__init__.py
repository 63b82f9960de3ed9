"""edgeloop: the MLOps continuum from edge to cloud."""

from edgeloop.errors import EdgeloopError

__version__ = "0.1.0"
__all__ = ["EdgeloopError", "__version__"]

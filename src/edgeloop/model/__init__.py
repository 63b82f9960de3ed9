"""Pure domain values and rules: no I/O happens in this package."""

from edgeloop.model.events import Event, EventType
from edgeloop.model.manifest import ModelManifest, TensorSpec

__all__ = ["Event", "EventType", "ModelManifest", "TensorSpec"]

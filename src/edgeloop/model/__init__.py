"""Pure domain values and rules: no I/O happens in this package."""

from edgeloop.model.events import Event, EventType

__all__ = ["Event", "EventType"]

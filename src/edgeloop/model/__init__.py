"""Pure domain values and rules: no I/O happens in this package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeloop.model.events import Event, EventType

if TYPE_CHECKING:
    from edgeloop.model.manifest import ModelManifest, TensorSpec

__all__ = ["Event", "EventType", "ModelManifest", "TensorSpec"]


def __getattr__(name: str) -> Any:
    # The manifest schema (pydantic) loads on first use: the data plane (stores, journal,
    # replication) imports edgeloop.model.events without paying for it.
    if name in ("ModelManifest", "TensorSpec"):
        from edgeloop.model import manifest

        return getattr(manifest, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""How step outputs travel and are recorded: JSON only (small values inline, artifacts by key)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from edgeloop.errors import PipelineError
from edgeloop.pipeline.dsl import Artifact

INLINE_LIMIT = 1 << 20  # bigger outputs belong in the store as artifacts


def _default(value: Any) -> Any:
    if isinstance(value, Artifact):
        return value.to_dict()
    raise TypeError(
        f"{type(value).__name__} is not JSON; return an Artifact for big or binary data"
    )


def encode(value: Any, *, step: str = "?") -> bytes:
    """A step output as JSON bytes; refuses non-JSON values and inline values over 1 MiB."""
    try:
        data = orjson.dumps(
            value, default=_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
        )
    except TypeError as exc:
        raise PipelineError(f"step {step!r} returned a value that cannot travel: {exc}") from exc
    if len(data) > INLINE_LIMIT:
        raise PipelineError(
            f"step {step!r} returned {len(data)} bytes inline (limit {INLINE_LIMIT}); write it "
            "with ctx.put_artifact() and return the Artifact"
        )
    return data


def _revive(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("__artifact__") is True:
            return Artifact(key=value["key"], sha256=value["sha256"], size=value.get("size", 0))
        return {k: _revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


def decode(data: bytes) -> Any:
    """The value `encode` wrote, with artifact references turned back into Artifact."""
    return _revive(orjson.loads(data))


def digest(data: bytes) -> str:
    """SHA-256 of encoded bytes (an artifact's digest covers its content hash, not its key)."""
    return hashlib.sha256(data).hexdigest()

"""The one event envelope every component speaks: id, type, site, subject, data, time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson


class EventType(StrEnum):
    """Event types edgeloop itself emits; other strings are allowed for user events."""

    OBJECT_CREATED = "object.created"
    OBJECT_REPLICATED = "object.replicated"
    RUN_STARTED = "run.started"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"
    MODEL_REGISTERED = "model.registered"
    MODEL_PROMOTED = "model.promoted"
    MODEL_STATE_CHANGED = "model.state_changed"
    ROLLOUT_STARTED = "rollout.started"
    ROLLOUT_WAVE = "rollout.wave"
    ROLLOUT_HALTED = "rollout.halted"
    ROLLOUT_COMPLETED = "rollout.completed"
    SITE_HEARTBEAT = "site.heartbeat"
    SITE_UNHEALTHY = "site.unhealthy"
    DRIFT_DETECTED = "drift.detected"


def utcnow() -> datetime:
    """The current time in UTC, the only clock domain edgeloop stores."""
    return datetime.now(UTC)


def new_event_id() -> str:
    """A fresh random event id (used when no natural idempotency key exists)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Event:
    """An immutable event; `id` is its idempotency key, so re-delivery has one effect."""

    type: str
    site: str
    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)
    time: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if not self.id or not self.type:
            raise ValueError("an event needs a non-empty id and type")
        if self.time.tzinfo is None:
            raise ValueError(f"event {self.id}: time must be timezone-aware (UTC)")

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON-ready values."""
        return {
            "id": self.id,
            "type": self.type,
            "site": self.site,
            "subject": self.subject,
            "data": self.data,
            "time": self.time.isoformat(),
        }

    def to_json(self) -> bytes:
        """The event as compact JSON bytes."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """Rebuild an event from `to_dict()` output; raises ValueError on a bad shape."""
        try:
            time = datetime.fromisoformat(raw["time"])
            return cls(
                id=str(raw["id"]),
                type=str(raw["type"]),
                site=str(raw.get("site", "")),
                subject=str(raw.get("subject", "")),
                data=dict(raw.get("data") or {}),
                time=time if time.tzinfo else time.replace(tzinfo=UTC),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an edgeloop event: missing or bad field {exc}") from exc

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """Parse an event from JSON."""
        return cls.from_dict(orjson.loads(raw))

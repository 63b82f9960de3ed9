"""Request bodies of the control-plane API (validated by FastAPI, published in its OpenAPI)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from edgeloop.model.rbac import Role
from edgeloop.model.rollout import Gate, Selector, WaveSpec
from edgeloop.workspace.config import NAME_PATTERN

_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._-]{0,63}")


class _Body(BaseModel):
    # NaN and infinities are not JSON: PostgreSQL's json type refuses them, so one such
    # value would fail the whole batch of heartbeats it was buffered with.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise ValueError(
                f"label {key}={value}: keys are letters, digits, '.', '_', '-', '/'; "
                "values letters, digits, '.', '_', '-' (at most 63)"
            )
    return labels


def _unicode(text: str) -> str:
    """Refuse lone surrogates (`"\\ud800"` parses in JSON, but PostgreSQL refuses to store it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (a lone surrogate escape is not)") from None
    return text


_Text = Annotated[str, AfterValidator(_unicode)]
_COUNT_MAX = 2**63 - 1  # what the database's JSON codec (orjson) writes and reads back exactly


class ProjectIn(_Body):
    name: str = Field(pattern=NAME_PATTERN)


class TokenIn(_Body):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    expires_in: float | None = Field(default=None, gt=0, description="seconds; none: never")


class JoinTokenIn(_Body):
    site: str = Field(pattern=NAME_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    expires_in: float = Field(default=3600.0, gt=0, le=30 * 86400)

    _labels = field_validator("labels")(_check_labels)


class LabelsIn(_Body):
    labels: dict[str, str] = Field(max_length=64)

    _labels = field_validator("labels")(_check_labels)


class HeartbeatIn(_Body):
    """A site's status, sent every few seconds by its agent."""

    loaded: dict[
        Annotated[_Text, Field(max_length=200)], Annotated[_Text, Field(max_length=100)]
    ] = Field(default_factory=dict, max_length=256, description="model -> serving version")
    healthy: bool = True
    error_rate: float = Field(default=0.0, ge=0, le=1)
    p99_ms: float | None = Field(default=None, ge=0)
    quality: float | None = None
    backlog: int | None = Field(
        default=None, ge=0, le=_COUNT_MAX, description="objects waiting to replicate"
    )
    capture_drops: int | None = Field(default=None, ge=0, le=_COUNT_MAX)
    spool_fraction: float | None = Field(default=None, ge=0, le=1)
    applied_generation: int | None = Field(default=None, ge=0, le=_COUNT_MAX)
    message: _Text | None = Field(default=None, max_length=2000)


class ReportIn(_Body):
    """The outcome of applying one model of the desired state on a site, or an alert the
    site's agent raised (`outcome: alert`, which names no model)."""

    model: str | None = Field(default=None, min_length=1, max_length=200)
    version: str | None = Field(default=None, min_length=1, max_length=100)
    outcome: str = Field(pattern=r"^(applied|failed|rolled_back|refused|alert)$")
    generation: int | None = Field(default=None, ge=0, le=_COUNT_MAX)
    message: _Text | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _model_unless_alert(self) -> ReportIn:
        if self.outcome != "alert" and (self.model is None or self.version is None):
            raise ValueError(f"a {self.outcome!r} report names its model and version")
        return self


class GateIn(_Body):
    min_healthy_seconds: float = Field(default=60.0, ge=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float | None = Field(default=None, gt=0)
    min_quality: float | None = None
    wave_timeout_seconds: float = Field(default=900.0, gt=0)

    def to_gate(self) -> Gate:
        return Gate(**self.model_dump())


class DeploymentIn(_Body):
    """A model's version, or a registry alias it follows, on the sites a selector matches."""

    model: str = Field(min_length=1, max_length=200)
    version: str | None = Field(default=None, min_length=1, max_length=100)
    alias: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,62}$",
        description="follow this registry alias (e.g. champion): when it moves, a rollout "
        "with `waves` and `gate` moves the deployment",
    )
    selector: str = Field(default="", max_length=1000)
    waves: str = Field(default="5,25,100", description="waves of the rollouts an alias starts")
    gate: GateIn | None = None

    @field_validator("selector")
    @classmethod
    def _selector_parses(cls, value: str) -> str:
        Selector.parse(value)
        return value

    @field_validator("waves")
    @classmethod
    def _waves_parse(cls, value: str) -> str:
        WaveSpec.parse(value)
        return value

    @model_validator(mode="after")
    def _version_or_alias(self) -> DeploymentIn:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of version and alias")
        return self


class RolloutIn(_Body):
    deployment: str = Field(pattern=NAME_PATTERN)
    version: str = Field(min_length=1, max_length=100)
    waves: str = Field(
        default="5,25,100",
        description="cumulative percentages '5,25,100', or 'label:ring=canary,early'",
    )
    gate: GateIn = Field(default_factory=GateIn)

    @field_validator("waves")
    @classmethod
    def _waves_parse(cls, value: str) -> str:
        WaveSpec.parse(value)
        return value


class ActionIn(_Body):
    reason: str = Field(default="", max_length=1000)

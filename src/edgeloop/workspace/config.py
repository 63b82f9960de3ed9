"""The schema of `edgeloop.yaml`: project, sites and replication rules (later issues extend it)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
SiteName = Annotated[str, Field(pattern=NAME_PATTERN, description="lowercase letters, digits, '-'")]


class Tier(StrEnum):
    """Where a site sits in the continuum."""

    EDGE = "edge"
    CORE = "core"
    CLOUD = "cloud"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Strict):
    """One site: its name, tier, labels, object store URL and (at edges) serving port."""

    name: SiteName
    tier: Tier
    labels: dict[str, str] = Field(default_factory=dict)
    store: str = Field(description="object store URL; a relative path is inside the workspace")
    serving_port: int | None = Field(default=None, ge=1, le=65535)
    control_port: int | None = Field(
        default=None, ge=1, le=65535, description="core: port of the fleet control plane (8700)"
    )
    tick_interval: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="core: seconds between the control plane's rollout gate evaluations and "
        "registry alias checks (1)",
    )
    journal: str | None = Field(
        default=None,
        description="event journal: a SQLite path (relative to the workspace) or "
        "postgresql://...?journal=NAME; default state/<site>/journal.db",
    )
    database: str | None = Field(
        default=None,
        description="core: SQL database of the registry and the control plane "
        "(postgresql://...); default SQLite files under state/<site>/",
    )

    @field_validator("labels")
    @classmethod
    def _labels_are_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}", key):
                raise ValueError(f"label key {key!r} must be letters, digits, '.', '_', '-', '/'")
        return labels


class ReplicationRule(_Strict):
    """Copy objects under `prefix` from one site's store to another's."""

    name: SiteName | None = None
    source: SiteName = Field(alias="from")
    target: SiteName = Field(alias="to")
    prefix: str = ""
    transfers: int = Field(default=4, ge=1, le=256)
    bwlimit: str | None = Field(default=None, description="bytes/s, e.g. '10M'; none: unlimited")
    anti_entropy_interval: float = Field(default=300.0, ge=0, description="seconds; 0 turns it off")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def label(self) -> str:
        return self.name or f"{self.source}-to-{self.target}"


DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(s|m|h|d|w)\s*$"
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, description="e.g. 90s, 15m, 1h, 7d")]


class DriftThresholds(_Strict):
    """When a feature counts as drifted: its test is significant AND one distance is at least
    its threshold (None turns a distance off; with every distance off, the test alone decides).
    """

    psi: float | None = Field(default=0.2, ge=0)
    ks: float | None = Field(default=0.1, ge=0, le=1)
    wasserstein: float | None = Field(
        default=0.1, ge=0, description="in standard deviations of the reference"
    )
    js: float | None = Field(default=0.1, ge=0, le=1, description="Jensen-Shannon, in bits")
    significance: float | None = Field(
        default=None, gt=0, lt=1, description="overrides the model's significance"
    )

    def merged(self, override: DriftThresholds | None) -> DriftThresholds:
        """These thresholds with the fields `override` sets explicitly replaced."""
        if override is None:
            return self
        return self.model_copy(
            update={name: getattr(override, name) for name in override.model_fields_set}
        )


class QualityBound(_Strict):
    """The live-quality metric of a model and the bound below (or, for MAE, above) which it
    raises `quality.degraded`."""

    metric: Literal["accuracy", "f1", "mae"] = "accuracy"
    bound: float | None = Field(default=None, description="None: report only, never alert")
    bucket: Duration = "1h"
    min_labels: int = Field(default=30, ge=1, description="buckets with fewer labels are skipped")


class ModelMonitoring(_Strict):
    """Per-model monitoring settings; unset fields fall back to the `monitoring:` defaults."""

    window: Duration | None = None
    significance: float | None = Field(default=None, gt=0, lt=1)
    thresholds: DriftThresholds | None = None
    features: dict[str, DriftThresholds] = Field(default_factory=dict)
    multivariate: bool | None = None
    quality: QualityBound = Field(default_factory=QualityBound)


class MonitoringConfig(_Strict):
    """The `monitoring:` section: drift windows, significance, thresholds, per-model overrides."""

    window: Duration = "1h"
    every: Duration | None = Field(
        default="5m", description="how often `edgeloop core` runs drift and quality; null: never"
    )
    grace: Duration = Field(
        default="5m", description="wait this long after a window ends (late captures) to judge it"
    )
    catch_up: Duration = Field(
        default="1d", description="windows ended this long ago and never judged are still judged"
    )
    quality_since: Duration = Field(
        default="24h", description="how far back each scheduled quality pass scores buckets"
    )
    significance: float = Field(
        default=0.01, gt=0, lt=1, description="family-wise false-alarm rate per report"
    )
    min_rows: int = Field(default=100, ge=1, description="smaller windows are not judged")
    multivariate: bool = True
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
    models: dict[str, ModelMonitoring] = Field(default_factory=dict)

    def for_model(self, model: str) -> ModelMonitoring:
        """The settings of `model` (its own entry, or all defaults)."""
        return self.models.get(model) or ModelMonitoring()

    def feature_thresholds(self, model: str, feature: str) -> DriftThresholds:
        """Global thresholds, overridden by the model's, overridden by the feature's."""
        entry = self.for_model(model)
        return self.thresholds.merged(entry.thresholds).merged(entry.features.get(feature))


class SigningConfig(_Strict):
    """The key that signs model packages: its public half is here, in every site's config;
    the private key stays in the core site's state directory."""

    public_key: str = Field(description="PEM of the EC P-256 public key; set by `edgeloop init`")
    private_key: str | None = Field(
        default=None, description="core only: path of the private key (default state/<core>/)"
    )

    @field_validator("public_key")
    @classmethod
    def _is_pem(cls, value: str) -> str:
        if "-----BEGIN PUBLIC KEY-----" not in value:
            raise ValueError("public_key must be a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return value


class PipelineConfig(_Strict):
    """A named pipeline: where its code is and its default run parameters."""

    ref: str = Field(description="module:attribute of a Pipeline, e.g. mypkg.pipelines:RETRAIN")
    executor: str = Field(default="inline", description="inline, ray:local or ray://host:port")
    params: dict[str, object] = Field(default_factory=dict)


class TriggerRule(_Strict):
    """When to start a pipeline run: on replicated objects, on drift, on a schedule, by hand."""

    name: SiteName
    pipeline: str
    event: Literal["object.replicated", "drift.detected", "schedule", "manual"] = Field(
        description="what fires it (the key is not `on`: YAML 1.1 reads `on` as true)"
    )
    prefix: str = Field(default="", description="object.replicated: only keys under this prefix")
    model: str | None = Field(default=None, description="drift.detected: only this model's events")
    min_records: int = Field(default=1, ge=1, description="objects that close a window")
    max_wait: Duration | None = Field(
        default=None, description="close a non-empty window this long after it opened"
    )
    cron: str | None = Field(default=None, description="schedule: five-field cron, in UTC")
    params: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _schedule_has_cron(self) -> TriggerRule:
        if (self.event == "schedule") != (self.cron is not None):
            raise ValueError(
                f"trigger {self.name!r}: cron is set for, and only for, event: schedule"
            )
        return self


class WorkspaceConfig(_Strict):
    """The whole `edgeloop.yaml`."""

    version: int = Field(default=1, ge=1, le=1)
    project: SiteName
    sites: list[SiteConfig] = Field(min_length=1)
    replication: list[ReplicationRule] = Field(default_factory=list)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    signing: SigningConfig | None = None
    pipelines: dict[str, PipelineConfig] = Field(default_factory=dict)
    triggers: list[TriggerRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> WorkspaceConfig:
        names = [s.name for s in self.sites]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"site names must be unique; repeated: {', '.join(dupes)}")
        for rule in self.replication:
            for end in (rule.source, rule.target):
                if end not in names:
                    raise ValueError(
                        f"replication rule {rule.label!r} names site {end!r}, which is not in "
                        f"sites ({', '.join(names)})"
                    )
            if rule.source == rule.target:
                raise ValueError(f"replication rule {rule.label!r} copies a site onto itself")
        return self

    def site(self, name: str) -> SiteConfig:
        """The site called `name`; raises KeyError listing the known ones."""
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(f"no site {name!r} in this workspace; sites: {[s.name for s in self.sites]}")

"""The schema of `edgeloop.yaml`: project, sites and replication rules (later issues extend it)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

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


class WorkspaceConfig(_Strict):
    """The whole `edgeloop.yaml`."""

    version: int = Field(default=1, ge=1, le=1)
    project: SiteName
    sites: list[SiteConfig] = Field(min_length=1)
    replication: list[ReplicationRule] = Field(default_factory=list)

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

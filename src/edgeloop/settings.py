"""Settings read from the environment, in this one place (prefix `EDGELOOP_`)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

ENV_PREFIX = "EDGELOOP_"


class Settings(BaseModel):
    """Process-wide settings; every field can be set as `EDGELOOP_<FIELD>` in the environment."""

    # A plain model that reads the environment itself: pydantic-settings would add about
    # 0.1 s to the start of every `edgeloop` command.
    model_config = ConfigDict(extra="ignore")

    workspace: Path = Path()
    """Directory holding edgeloop.yaml (EDGELOOP_WORKSPACE)."""
    log_level: str = "INFO"
    """Python logging level for edgeloop processes (EDGELOOP_LOG_LEVEL)."""
    control_url: str | None = None
    """URL of the fleet control plane, for agents and the CLI (EDGELOOP_CONTROL_URL)."""
    token: str | None = None
    """API token for the control plane (EDGELOOP_TOKEN); prefer --token-file."""
    no_progress: bool = False
    """Never draw progress bars, even in a terminal (EDGELOOP_NO_PROGRESS)."""

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        """Fill fields not given explicitly from `EDGELOOP_<FIELD>` variables."""
        given = dict(data) if isinstance(data, dict) else {}
        for name in cls.model_fields:
            value = os.environ.get(f"{ENV_PREFIX}{name.upper()}")
            if value is not None and name not in given:
                given[name] = value
        return given


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()

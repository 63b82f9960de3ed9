"""Settings read from the environment, in this one place (prefix `EDGELOOP_`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as `EDGELOOP_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="EDGELOOP_", extra="ignore")

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()

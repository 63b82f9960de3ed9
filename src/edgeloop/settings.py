"""Settings read from the environment, in this one place (prefix `EDGELOOP_`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from edgeloop.errors import ConfigError

ENV_PREFIX = "EDGELOOP_"
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})
T = TypeVar("T")


def on_off(raw: str) -> bool | None:
    """True or False for the project's yes/no words (1/0, true/false, yes/no, on/off, y/n,
    t/f; empty is no), None for anything else: settings and store URL options read them."""
    value = raw.strip().lower()
    return value in _TRUE if value in _TRUE | _FALSE else None


def _flag(variable: str, raw: str) -> bool:
    value = on_off(raw)
    if value is not None:
        return value
    raise ConfigError(f"{variable}={raw!r} is not a yes/no value; use 1 or 0 (true/false)")


def _env(name: str, parse: Callable[[str, str], T], default: T) -> Callable[[], T]:
    """A default factory: `EDGELOOP_<NAME>` from the environment, parsed, else `default`."""
    variable = f"{ENV_PREFIX}{name}"

    def read() -> T:
        raw = os.environ.get(variable)
        return default if raw is None else parse(variable, raw)

    return read


def _text(variable: str, raw: str) -> str:
    return raw


def _path(variable: str, raw: str) -> Path:
    return Path(raw)


# A plain dataclass, not pydantic-settings: that would add about 0.15 s to every command's start.
@dataclass
class Settings:
    """Process-wide settings; every field can be set as `EDGELOOP_<FIELD>` in the environment
    (explicit arguments win)."""

    workspace: Path = field(default_factory=_env("WORKSPACE", _path, Path()))
    """Directory holding edgeloop.yaml (EDGELOOP_WORKSPACE)."""
    log_level: str = field(default_factory=_env("LOG_LEVEL", _text, "INFO"))
    """Python logging level for edgeloop processes (EDGELOOP_LOG_LEVEL)."""
    control_url: str | None = field(default_factory=_env("CONTROL_URL", _text, None))
    """URL of the fleet control plane, for agents and the CLI (EDGELOOP_CONTROL_URL)."""
    token: str | None = field(default_factory=_env("TOKEN", _text, None))
    """API token for the control plane (EDGELOOP_TOKEN); prefer --token-file."""
    no_progress: bool = field(default_factory=_env("NO_PROGRESS", _flag, False))
    """Never draw progress bars, even in a terminal (EDGELOOP_NO_PROGRESS)."""

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()

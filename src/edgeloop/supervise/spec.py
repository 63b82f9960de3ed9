"""What the supervisor runs: one component (a command line) per site, with its port and the
URL that says whether it is healthy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ComponentSpec:
    """One supervised process: `component` (core, server, agent, replicator) at `site`."""

    component: str
    site: str
    argv: tuple[str, ...]
    port: int | None = None
    health_url: str | None = None
    """Answers 2xx when the component is healthy; None: only liveness is known."""
    requires: tuple[str, ...] = ()
    """Keys of components that must be healthy before this one starts."""
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def key(self) -> str:
        """`<site>-<component>`: the component's name in logs, the state file and status."""
        return f"{self.site}-{self.component}"

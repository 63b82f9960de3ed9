"""Where the dashboard reads from: the core store (drift reports, captures), the core journal
(the loop timeline), the model registry and the workspace's monitoring settings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgeloop.journal import Journal, open_journal
from edgeloop.store.base import ObjectStore
from edgeloop.workspace.config import MonitoringConfig

if TYPE_CHECKING:
    from edgeloop.fleet.control import ControlSettings
    from edgeloop.registry import Registry


@dataclass
class DashboardSources:
    """The read-only parts the dashboard's JSON routes draw on; any of them may be missing
    (a control plane without a workspace has no registry), and the pages say so."""

    store: ObjectStore | None = None
    journal: Journal | None = None
    open_registry: Callable[[], Registry] | None = None
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    _registry: Registry | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def registry(self) -> Registry | None:
        """The registry, opened on first use (it needs the workspace's signing key)."""
        if self.open_registry is None:
            return None
        with self._lock:
            if self._registry is None:
                self._registry = self.open_registry()
            return self._registry

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> DashboardSources:
        """The sources of a control plane: its store and journal, and, when it belongs to a
        workspace, that workspace's registry and monitoring settings."""
        journal = settings.journal
        if isinstance(journal, str):
            journal = open_journal(journal, base_dir=settings.state_dir)
        workspace = settings.workspace
        opener: Callable[[], Registry] | None = None
        monitoring = MonitoringConfig()
        if workspace is not None:
            monitoring = workspace.config.monitoring
            if workspace.config.signing is not None:

                def opener() -> Registry:
                    from edgeloop.registry.workspace import open_registry

                    return open_registry(workspace)

        return cls(settings.store, journal, opener, monitoring)

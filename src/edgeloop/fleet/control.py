"""Wiring of one control plane: settings -> database, signer, journal, store, service, auth."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from edgeloop.fleet.auth import Authenticator
from edgeloop.fleet.db import create_db_engine
from edgeloop.fleet.service import FleetService
from edgeloop.fleet.signing import DesiredPublisher, Signer, load_or_create_key
from edgeloop.journal import Journal, JournalSink, open_journal
from edgeloop.store.base import ObjectStore
from edgeloop.workspace.config import Tier
from edgeloop.workspace.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class ControlSettings:
    """Where a control plane keeps its state and how it behaves; paths default into state_dir."""

    state_dir: Path
    project: str = "default"
    db_url: str = "fleet.db"
    """`sqlite:///path`, a path (relative to state_dir), or `postgresql://user@host/db`."""
    admin_token_file: Path | None = None
    signing_key: Path | None = None
    journal: Journal | str | None = None
    store: ObjectStore | None = None
    core_site: str = "core"
    tick_interval: float = 1.0
    long_poll_max: float = 60.0
    long_poll_recheck: float = 15.0
    """Seconds between database re-reads of a waiting long-poll (changes made by this process
    wake it at once; this bounds how late one made by another replica is seen)."""
    token_cache_seconds: float = 30.0
    """How long a token lookup is cached. Revocations through this process apply at once;
    through another replica, within this many seconds."""
    heartbeat_flush_interval: float = 0.2
    """Seconds heartbeats are buffered before one batched write; 0 writes each at once."""
    clock: Callable[[], float] = field(default=time.time)

    @classmethod
    def for_workspace(cls, workspace: Workspace, core_site: str | None = None) -> ControlSettings:
        """Settings of the control plane of a workspace's core site (its store and journal)."""
        if core_site is None:
            cores = workspace.sites(Tier.CORE) or workspace.sites(Tier.CLOUD)
            core_site = cores[0].name if cores else workspace.sites()[0].name
        return cls(
            state_dir=workspace.state_dir(core_site) / "fleet",
            project=workspace.config.project,
            db_url=workspace.site(core_site).database or "fleet.db",
            journal=workspace.journal(core_site),
            store=workspace.store(core_site),
            core_site=core_site,
        )

    @property
    def admin_token_path(self) -> Path:
        return self.admin_token_file or self.state_dir / "admin.token"

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key or self.state_dir / "fleet-signing.pem"


@dataclass
class ControlPlane:
    """A built control plane: its database engine, service and authenticator."""

    settings: ControlSettings
    engine: Engine
    service: FleetService
    auth: Authenticator
    minted_admin: bool


def build_control_plane(settings: ControlSettings) -> ControlPlane:
    """Open (or create) the database, mint the first admin token if there is none, and wire up."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.db_url, base_dir=settings.state_dir)
    journal = settings.journal
    if isinstance(journal, str):
        journal = open_journal(journal, base_dir=settings.state_dir)
    service = FleetService(
        engine,
        signer=Signer(load_or_create_key(settings.signing_key_path)),
        events=JournalSink(journal) if journal is not None else None,
        publisher=DesiredPublisher(settings.store) if settings.store is not None else None,
        clock=settings.clock,
        core_site=settings.core_site,
    )
    minted = service.bootstrap_admin(settings.project, settings.admin_token_path)
    if minted:
        log.warning("minted the first admin token into %s (mode 0600)", settings.admin_token_path)
    auth = Authenticator(engine, cache_seconds=settings.token_cache_seconds, clock=settings.clock)
    return ControlPlane(settings, engine, service, auth, minted)

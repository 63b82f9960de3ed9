"""Wiring of one control plane: settings -> database, signer, journal, store, service, auth."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from edgeloop.fleet.auth import Authenticator
from edgeloop.fleet.db import create_db_engine
from edgeloop.fleet.service import FleetService
from edgeloop.fleet.signing import DesiredPublisher, Signer, load_or_create_key
from edgeloop.journal import Journal, JournalSink, open_journal
from edgeloop.store.base import ObjectStore
from edgeloop.store.journaled import JournaledStore
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
    resolve_alias: Callable[[str, str], str | None] | None = None
    """(model, alias) -> the version the registry's alias points at; deployments that name an
    alias follow it (a move starts a rollout). None: deployments must name versions."""
    workspace: Workspace | None = None
    """The workspace this control plane belongs to: the dashboard reads its model registry
    and monitoring settings. None: the dashboard's models page is empty."""

    @classmethod
    def for_workspace(cls, workspace: Workspace, core_site: str | None = None) -> ControlSettings:
        """Settings of the control plane of a workspace's core site (its store and journal)."""
        if core_site is None:
            cores = workspace.sites(Tier.CORE) or workspace.sites(Tier.CLOUD)
            core_site = cores[0].name if cores else workspace.sites()[0].name
        journal = workspace.journal(core_site)
        tick = workspace.site(core_site).tick_interval
        return cls(
            state_dir=workspace.state_dir(core_site) / "fleet",
            project=workspace.config.project,
            db_url=workspace.site(core_site).database or "fleet.db",
            journal=journal,
            # Journaled, so the core->edge replication rules see each desired-state document
            # as an object.created event instead of waiting for a listing pass.
            store=JournaledStore(workspace.store(core_site), JournalSink(journal), core_site),
            core_site=core_site,
            # One workspace key signs packages and desired state, so an edge needs only the
            # workspace's signing.public_key (see docs/security.md).
            signing_key=_workspace_signing_key(workspace),
            resolve_alias=registry_alias_resolver(workspace),
            workspace=workspace,
            tick_interval=cls.tick_interval if tick is None else tick,
        )

    @property
    def admin_token_path(self) -> Path:
        return self.admin_token_file or self.state_dir / "admin.token"

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key or self.state_dir / "fleet-signing.pem"


def _workspace_signing_key(workspace: Workspace) -> Path | None:
    """The workspace's model signing key when this machine holds it (the core does)."""
    from edgeloop.registry.workspace import signing_key_path

    if workspace.config.signing is None:
        return None
    path = signing_key_path(workspace)
    return path if path.exists() else None


def registry_alias_resolver(workspace: Workspace) -> Callable[[str, str], str | None] | None:
    """Resolves model aliases through the workspace's registry (opened on first use)."""
    if workspace.config.signing is None or not workspace.sites(Tier.CORE):
        return None
    holder: list[Any] = []

    def resolve(model: str, alias: str) -> str | None:
        from edgeloop.registry.workspace import open_registry

        if not holder:
            holder.append(open_registry(workspace))
        version = holder[0].aliases(model).get(alias)
        return None if version is None else str(version)

    return resolve


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
        resolve_alias=settings.resolve_alias,
    )
    service.resign_if_key_changed()
    minted = service.bootstrap_admin(settings.project, settings.admin_token_path)
    if minted:
        log.warning("minted the first admin token into %s (mode 0600)", settings.admin_token_path)
    auth = Authenticator(engine, cache_seconds=settings.token_cache_seconds, clock=settings.clock)
    return ControlPlane(settings, engine, service, auth, minted)

"""Open the registry of a workspace: the core site's store, journal, database and keys."""

from __future__ import annotations

import logging
from pathlib import Path

from edgeloop.errors import ConfigError
from edgeloop.journal.base import JournalSink
from edgeloop.registry.registry import Recovery, Registry
from edgeloop.registry.signing import SIGNING_KEY_NAME, load_public_key
from edgeloop.store.journaled import JournaledStore
from edgeloop.workspace.config import SiteConfig, Tier
from edgeloop.workspace.workspace import Workspace

DATABASE_NAME = "registry.db"
log = logging.getLogger(__name__)


def core_site(workspace: Workspace) -> SiteConfig:
    """The workspace's core site (the first one with tier `core`)."""
    for site in workspace.sites(Tier.CORE):
        return site
    raise ConfigError(f"{workspace.config_path}: no site with tier core; the registry lives there")


def trusted_public_key(workspace: Workspace) -> str:
    """The model signing public key every site of the workspace trusts."""
    signing = workspace.config.signing
    if signing is None:
        raise ConfigError(
            f"{workspace.config_path}: no `signing.public_key`; `edgeloop init` writes one "
            "(copy it from the core's edgeloop.yaml)"
        )
    load_public_key(signing.public_key)
    return signing.public_key


def signing_key_path(workspace: Workspace) -> Path:
    """Where the core keeps its model signing private key."""
    signing = workspace.config.signing
    if signing is not None and signing.private_key:
        path = Path(signing.private_key)
        return path if path.is_absolute() else workspace.root / path
    return workspace.state_dir(core_site(workspace).name) / SIGNING_KEY_NAME


def open_registry(workspace: Workspace, database: str | None = None) -> Registry:
    """The registry of `workspace`: SQLite in the core's state dir unless `database` names
    another (e.g. postgresql://...); events go to the core's journal."""
    core = core_site(workspace)
    url = database or core.database or str(workspace.state_dir(core.name) / DATABASE_NAME)
    key = signing_key_path(workspace)
    events = JournalSink(workspace.journal(core.name))
    return Registry(
        url,
        # Package files are journaled as object.created, so the edges' replicators carry a
        # new version down at once rather than at their next listing pass.
        JournaledStore(workspace.store(core.name), events, core.name),
        public_key=trusted_public_key(workspace),
        signing_key=key if key.exists() else None,
        events=events,
        site=core.name,
    )


def recover_registry(workspace: Workspace, database: str | None = None) -> Recovery | None:
    """Run `Registry.recover` on the workspace's registry (what the core does at start);
    None when the workspace has no signing key configured, so no registry to repair."""
    if workspace.config.signing is None:
        return None
    registry = open_registry(workspace, database)
    try:
        done = registry.recover()
    finally:
        registry.close()
    for info in done.swept:
        log.warning("registry: %s was left pending by a dead registration; marked failed", info.ref)
    for info in done.announced:
        log.info("registry: re-sent model.registered for %s", info.ref)
    return done

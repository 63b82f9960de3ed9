"""`edgeloop init`: write a new workspace with a core and two edge sites on directory stores."""

from __future__ import annotations

from pathlib import Path

from edgeloop.errors import ConfigError
from edgeloop.workspace.config import (
    ReplicationRule,
    SigningConfig,
    SiteConfig,
    Tier,
    WorkspaceConfig,
)
from edgeloop.workspace.loader import CONFIG_NAME
from edgeloop.workspace.workspace import Workspace

DEFAULT_EDGES = ("edge-a", "edge-b")
FIRST_SERVING_PORT = 8101


def default_config(project: str, edges: tuple[str, ...] = DEFAULT_EDGES) -> WorkspaceConfig:
    """A core plus `edges`, each with a directory store, and capture/label replication up."""
    sites = [
        SiteConfig(name="core", tier=Tier.CORE, labels={"role": "core"}, store="sites/core/store")
    ]
    regions = ("eu", "us")
    for i, edge in enumerate(edges):
        sites.append(
            SiteConfig(
                name=edge,
                tier=Tier.EDGE,
                labels={"region": regions[i % len(regions)], "hw": "cpu"},
                store=f"sites/{edge}/store",
                serving_port=FIRST_SERVING_PORT + i,
            )
        )
    rules = [
        ReplicationRule(
            name=f"{edge}-{prefix.rstrip('/')}-up", source=edge, target="core", prefix=prefix
        )
        for edge in edges
        for prefix in ("captures/", "labels/")
    ]
    # Down to each edge: signed model packages and signed desired state (an agent reads its
    # own, fleet/desired/<site>.json, to reconcile with the control plane out of reach).
    rules += [
        rule
        for edge in edges
        for rule in (
            ReplicationRule(name=f"{edge}-models-down", source="core", target=edge,
                            prefix="models/", anti_entropy_interval=60),
            ReplicationRule(name=f"{edge}-desired-down", source="core", target=edge,
                            prefix="fleet/desired/", anti_entropy_interval=30),
        )
    ]  # fmt: skip
    return WorkspaceConfig(project=project, sites=sites, replication=rules)


def init_workspace(
    directory: Path, project: str | None = None, *, force: bool = False
) -> Workspace:
    """Create `directory` with edgeloop.yaml and empty site stores; refuses to overwrite."""
    directory = directory.absolute()
    config_file = directory / CONFIG_NAME
    if config_file.exists() and not force:
        raise ConfigError(f"{config_file} already exists; pass --force to overwrite it")
    name = project or _project_name(directory.name)
    workspace = Workspace(directory, default_config(name))
    directory.mkdir(parents=True, exist_ok=True)
    for site in workspace.sites():
        workspace.store(site.name)  # creates the store directory
        workspace.state_dir(site.name)
    workspace = _with_signing_key(workspace)
    workspace.save()
    return workspace


def _with_signing_key(workspace: Workspace) -> Workspace:
    """Give the workspace its model signing key: the private key (0600) stays in the core's
    state directory, the public key goes into edgeloop.yaml for every site to trust."""
    from edgeloop.registry.signing import (
        SIGNING_KEY_NAME,
        generate_signing_key,
        load_private_key,
        public_key_pem,
    )

    core = next((s for s in workspace.sites() if s.tier == Tier.CORE), None)
    if core is None:
        return workspace
    key_path = workspace.state_dir(core.name) / SIGNING_KEY_NAME
    if key_path.exists():  # re-init with --force keeps the key, so signed models stay valid
        public = public_key_pem(load_private_key(key_path))
    else:
        public = generate_signing_key(key_path)
    config = workspace.config.model_copy(update={"signing": SigningConfig(public_key=public)})
    return Workspace(workspace.root, config)


def _project_name(raw: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in raw.lower()).strip("-")
    return cleaned[:63] or "edgeloop"

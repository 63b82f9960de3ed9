"""Workspaces: `edgeloop.yaml`, its schema, and where each site keeps its state."""

from edgeloop.workspace.config import ReplicationRule, SiteConfig, Tier, WorkspaceConfig
from edgeloop.workspace.loader import CONFIG_NAME, load_config, parse_config
from edgeloop.workspace.scaffold import default_config, init_workspace
from edgeloop.workspace.workspace import Workspace

__all__ = [
    "CONFIG_NAME",
    "ReplicationRule",
    "SiteConfig",
    "Tier",
    "Workspace",
    "WorkspaceConfig",
    "default_config",
    "init_workspace",
    "load_config",
    "parse_config",
]

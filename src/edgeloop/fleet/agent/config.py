"""Settings of one edge agent: which site, where the control plane and the server are, where
its packages come from, and the bounds of its runbooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeloop.fleet.agent.runbooks import HealthBounds
from edgeloop.journal.base import EventSink, JournalSink
from edgeloop.store.base import ObjectStore
from edgeloop.workspace.workspace import Workspace

SERVE_SPOOL_MAX_BYTES = 1024**3  # `edgeloop serve --spool-max-bytes` default


@dataclass
class AgentConfig:
    """Everything an agent needs; `serve_args` set means the agent owns `edgeloop serve`."""

    site: str
    state_dir: Path
    store: ObjectStore
    """The site's own store: packages and the desired-state copy arrive here by replication."""
    public_key: str
    """PEM of the key model packages are signed with (the workspace's `signing.public_key`)."""
    control_url: str | None = None
    token_file: Path | None = None
    join_token_file: Path | None = None
    repository: Path | None = None
    serving_url: str = "http://127.0.0.1:8080"
    serving_token_file: Path | None = None
    serve_args: list[str] | None = None
    """Arguments of the `edgeloop serve` child the agent owns (None: the server is external)."""
    interval: float = 2.0
    """Seconds between reconcile rounds (and the long-poll wait)."""
    heartbeat_interval: float = 5.0
    bounds: HealthBounds = field(default_factory=HealthBounds)
    spool_max_bytes: int | None = None
    ledgers: list[Path] = field(default_factory=list)
    """Replication ledgers of this site's outgoing rules, for the backlog."""
    max_backlog: int = 100_000
    events: EventSink | None = None
    """The site's journal, for `site.alert` and `agent.*` events (optional)."""
    server_start_timeout: float = 60.0
    incomplete_package_grace: float = 60.0
    """Seconds a package still arriving by replication (signature or signed files missing)
    is waited for before it is verified as it is and, incomplete, rejected."""

    @property
    def resolved_token_file(self) -> Path:
        return self.token_file or self.state_dir / "agent.token"

    @property
    def resolved_repository(self) -> Path:
        return self.repository or self.state_dir / "repository"

    @property
    def resolved_serving_token_file(self) -> Path:
        return self.serving_token_file or self.state_dir / "serving-token"

    @property
    def desired_key_file(self) -> Path:
        """The control plane's public key, pinned at join."""
        return self.state_dir / "desired-key.pem"


DEFAULT_CONTROL_PORT = 8700  # as edgeloop.fleet.embedded (not imported: agents need no server)


def for_workspace(
    workspace: Workspace,
    site: str,
    *,
    serve: bool = True,
    spool_max_bytes: int | None = None,
) -> AgentConfig:
    """The agent of a workspace edge site: its store, key, ports, ledgers and journal."""
    from edgeloop.registry.workspace import core_site, trusted_public_key

    config = workspace.site(site)
    core = core_site(workspace)
    control_port = core.control_port or DEFAULT_CONTROL_PORT
    port = config.serving_port or 8080
    state = workspace.state_dir(site) / "agent"
    ledgers = [
        workspace.state_dir(site) / "replication" / f"{rule.label}.db"
        for rule in workspace.rules()
        if rule.source == site
    ]
    serve_args = None
    if serve:
        serve_args = ["--site", site, "--workspace", str(workspace.root), "--port", str(port)]
        if spool_max_bytes is not None:
            serve_args += ["--spool-max-bytes", str(spool_max_bytes)]
    return AgentConfig(
        site=site,
        state_dir=state,
        store=workspace.store(site),
        public_key=trusted_public_key(workspace),
        control_url=f"http://127.0.0.1:{control_port}",
        serving_url=f"http://127.0.0.1:{port}",
        serve_args=serve_args,
        spool_max_bytes=spool_max_bytes or SERVE_SPOOL_MAX_BYTES,
        ledgers=ledgers,
        events=JournalSink(workspace.journal(site)),
    )

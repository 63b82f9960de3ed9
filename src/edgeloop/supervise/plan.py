"""Which processes `edgeloop up` runs for a workspace: the core, and at each edge the inference
server, the agent and the replicator, with their loopback ports. Pure over the config."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgeloop.replication.rules import rules_run_at
from edgeloop.supervise.spec import ComponentSpec
from edgeloop.workspace import Workspace
from edgeloop.workspace.config import Tier

DEFAULT_CONTROL_PORT = 8700
DEFAULT_SERVING_PORT = 8080
CORE, SERVER, AGENT, REPLICATOR = "core", "server", "agent", "replicator"


def edgeloop_command() -> tuple[str, ...]:
    """How to run the `edgeloop` CLI of this very installation."""
    script = Path(sys.executable).with_name("edgeloop")
    if script.exists():
        return (str(script),)
    found = shutil.which("edgeloop")
    if found:
        return (found,)
    return (sys.executable, "-c", "from edgeloop.cli.main import run; run()")


@dataclass(frozen=True)
class UpOptions:
    """Knobs of the processes `up` starts; `extra_args` adds arguments per component kind."""

    host: str = "127.0.0.1"
    agents: bool = True
    extra_args: Mapping[str, Sequence[str]] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


def control_port(ws: Workspace, core: str) -> int:
    """The port the core serves the control plane on (`control_port` of the core site)."""
    return int(getattr(ws.site(core), "control_port", None) or DEFAULT_CONTROL_PORT)


def control_url(ws: Workspace, core: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{control_port(ws, core)}"


def serving_dir(ws: Workspace, site: str) -> Path:
    """Where `edgeloop serve --site` keeps its spool and its admin token."""
    return ws.root / "state" / site / "serving"


def repository_dir(ws: Workspace, site: str) -> Path:
    """The model repository the edge's server watches and its agent installs into."""
    return ws.root / "state" / site / "repository"


def agent_dir(ws: Workspace, site: str) -> Path:
    return ws.root / "state" / site / "agent"


def plan_workspace(ws: Workspace, options: UpOptions | None = None) -> list[ComponentSpec]:
    """The components of `ws`, core first: the order they start in (and stop in reverse)."""
    opts = options or UpOptions()
    cli = edgeloop_command()
    root = str(ws.root)
    specs: list[ComponentSpec] = []

    def extra(kind: str) -> tuple[str, ...]:
        return tuple(opts.extra_args.get(kind, ()))

    cores = ws.sites(Tier.CORE)
    core = cores[0].name if cores else None
    if core is not None:
        port = control_port(ws, core)
        specs.append(
            ComponentSpec(
                component=CORE,
                site=core,
                argv=(*cli, "core", "-w", root, *extra(CORE)),
                port=port,
                health_url=f"http://{opts.host}:{port}/healthz",
                env=opts.env,
            )
        )
    for site in ws.sites():
        if site.tier != Tier.EDGE:
            if site.name != core and rules_run_at(ws, site.name):
                specs.append(_replicator(ws, site.name, cli, extra(REPLICATOR), opts))
            continue
        port = site.serving_port or DEFAULT_SERVING_PORT
        specs.append(
            ComponentSpec(
                component=SERVER,
                site=site.name,
                argv=(
                    *cli,
                    "serve",
                    "-w",
                    root,
                    "--site",
                    site.name,
                    "--host",
                    opts.host,
                    "--port",
                    str(port),
                    "--capture-to",
                    _store_url(ws, site.name),
                    "--repository",
                    str(repository_dir(ws, site.name)),
                    *extra(SERVER),
                ),
                port=port,
                health_url=f"http://{opts.host}:{port}/v2/health/live",
                env=opts.env,
            )
        )
        if opts.agents and core is not None:
            specs.append(
                ComponentSpec(
                    component=AGENT,
                    site=site.name,
                    argv=(
                        *cli,
                        "agent",
                        "-w",
                        root,
                        "--site",
                        site.name,
                        "--control",
                        control_url(ws, core, opts.host),
                        "--token-file",
                        str(agent_dir(ws, site.name) / "agent.token"),
                        "--join-token-file",
                        str(agent_dir(ws, site.name) / "join.token"),
                        "--no-serve",
                        "--serving-url",
                        f"http://{opts.host}:{port}",
                        "--serving-token-file",
                        str(serving_dir(ws, site.name) / "serving-token"),
                        "--repository",
                        str(repository_dir(ws, site.name)),
                        *extra(AGENT),
                    ),
                    requires=(f"{core}-{CORE}", f"{site.name}-{SERVER}"),
                    env=opts.env,
                )
            )
        if rules_run_at(ws, site.name):
            specs.append(_replicator(ws, site.name, cli, extra(REPLICATOR), opts))
    if core is not None and rules_run_at(ws, core):
        specs.insert(1, _replicator(ws, core, cli, extra(REPLICATOR), opts))
    return specs


def _replicator(
    ws: Workspace, site: str, cli: tuple[str, ...], extra: tuple[str, ...], opts: UpOptions
) -> ComponentSpec:
    return ComponentSpec(
        component=REPLICATOR,
        site=site,
        argv=(*cli, "replicate", "-w", str(ws.root), "--follow", "--site", site, *extra),
        env=opts.env,
    )


def _store_url(ws: Workspace, site: str) -> str:
    store = ws.site(site).store
    return store if "://" in store else (ws.root / store).as_uri()

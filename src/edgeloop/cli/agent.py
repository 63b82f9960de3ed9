"""`edgeloop agent`: the edge agent of one site (desired state in, verified swaps, runbooks)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from edgeloop.cli.common import err_console, friendly_errors
from edgeloop.errors import ConfigError
from edgeloop.workspace import Workspace


def agent(
    site: str = typer.Option(..., "--site", help="This site's name (as joined to the fleet)."),
    control: str | None = typer.Option(
        None,
        "--control",
        help="Control-plane URL. Default: $EDGELOOP_CONTROL_URL, else the workspace core's "
        "control_port on 127.0.0.1 (8700).",
        show_default=False,
    ),
    token_file: Path | None = typer.Option(
        None,
        "--token-file",
        help="The site's agent token (0600), written at join. Default: <state-dir>/agent.token.",
        show_default=False,
    ),
    join_token_file: Path | None = typer.Option(
        None,
        "--join-token-file",
        help="A one-time join token (`edgeloop fleet join-token`), traded for the agent token "
        "when --token-file does not exist yet.",
        show_default=False,
    ),
    workspace: Path | None = typer.Option(
        None,
        "--workspace",
        "-w",
        help="Workspace directory: the site's store, signing key, ports, ledgers and journal "
        "come from it. Default: $EDGELOOP_WORKSPACE or . when it has an edgeloop.yaml.",
        show_default=False,
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        help="The site's own store URL (packages and desired state are replicated into it); "
        "required without a workspace.",
        show_default=False,
    ),
    public_key: Path | None = typer.Option(
        None,
        "--public-key",
        help="PEM of the model signing public key; default the workspace's signing.public_key.",
        show_default=False,
    ),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="Agent state (desired state, tokens, repository). Default: state/<site>/agent in "
        "a workspace, else ./.edgeloop-agent.",
        show_default=False,
    ),
    repository: Path | None = typer.Option(
        None,
        "--repository",
        help="The server's model repository, written only by the agent. Default: "
        "<state-dir>/repository.",
        show_default=False,
    ),
    serve: bool = typer.Option(
        True,
        "--serve/--no-serve",
        help="Own the inference server: start `edgeloop serve` as a child and restart it when it "
        "dies. With --no-serve, attach to --serving-url (restarts are then the supervisor's).",
    ),
    serving_url: str | None = typer.Option(
        None,
        "--serving-url",
        help="Inference server URL. Default: http://127.0.0.1:<serving port>.",
        show_default=False,
    ),
    serving_port: int | None = typer.Option(
        None, "--serving-port", help="Port of the owned server (default: the site's serving_port)."
    ),
    serving_token_file: Path | None = typer.Option(
        None,
        "--serving-token-file",
        help="Bearer token of the server's repository API. Default: <state-dir>/serving-token "
        "(the owned server creates it).",
        show_default=False,
    ),
    serve_arg: list[str] = typer.Option(
        [], "--serve-arg", help="Extra argument for the owned `edgeloop serve` (repeatable)."
    ),
    interval: float = typer.Option(
        2.0, "--interval", min=0.05, help="Seconds between reconcile rounds (long-poll wait)."
    ),
    heartbeat_interval: float = typer.Option(
        5.0, "--heartbeat-interval", min=0.05, help="Seconds between heartbeats."
    ),
    probation: float = typer.Option(
        30.0, "--probation", min=0.0, help="Seconds a new version is watched after its swap."
    ),
    max_error_rate: float = typer.Option(
        0.05, "--max-error-rate", min=0.0, max=1.0, help="Error rate that rolls a swap back."
    ),
    min_requests: int = typer.Option(
        20, "--min-requests", min=1, help="Requests needed before the error rate is judged."
    ),
    spool_max_bytes: int | None = typer.Option(
        None,
        "--spool-max-bytes",
        help="The server's capture spool limit (passed to the owned server; alerts use it).",
    ),
    spool_alert: float = typer.Option(
        0.8, "--spool-alert", min=0.0, max=1.0, help="Spool fullness that raises an alert."
    ),
    backlog_alert: float = typer.Option(
        0.8, "--backlog-alert", min=0.0, max=1.0, help="Backlog share that raises an alert."
    ),
    once: bool = typer.Option(False, "--once", help="One reconcile round, then exit."),
) -> None:
    """Run the edge agent of a site: join with a one-time token, long-poll the site's signed
    desired state, verify and hot-swap models into the local server, roll back bad swaps,
    restart a dead server, raise alerts, and keep working from local state while offline."""
    from edgeloop.fleet.agent import Agent, AgentConfig, HealthBounds, for_workspace
    from edgeloop.settings import get_settings
    from edgeloop.store import open_store

    with friendly_errors():
        ws = _workspace(workspace)
        if ws is not None:
            config = for_workspace(ws, site, serve=serve, spool_max_bytes=spool_max_bytes)
        else:
            if store is None or public_key is None:
                raise ConfigError(
                    "outside a workspace give --store URL and --public-key FILE (or -w WORKSPACE)"
                )
            config = AgentConfig(
                site=site,
                state_dir=(state_dir or Path(".edgeloop-agent")).absolute(),
                store=open_store(store),
                public_key="",
                serve_args=[] if serve else None,
                spool_max_bytes=spool_max_bytes,
            )
        if public_key is not None:
            config.public_key = public_key.read_text(encoding="utf-8")
        if state_dir is not None:
            config.state_dir = state_dir.absolute()
        config.control_url = control or get_settings().control_url or config.control_url
        if config.control_url is None:
            config.control_url = "http://127.0.0.1:8700"
        config.token_file = token_file
        config.join_token_file = join_token_file
        config.repository = repository.absolute() if repository else None
        config.serving_token_file = serving_token_file
        if serving_port is not None:
            config.serving_url = f"http://127.0.0.1:{serving_port}"
        if serving_url is not None:
            config.serving_url = serving_url
        if config.serve_args is not None:
            port = config.serving_url.rsplit(":", 1)[-1].rstrip("/")
            args = list(config.serve_args)
            if "--port" in args:
                args[args.index("--port") + 1] = port
            else:
                args += ["--port", port]
            if spool_max_bytes is not None and "--spool-max-bytes" not in args:
                args += ["--spool-max-bytes", str(spool_max_bytes)]
            config.serve_args = [*args, *serve_arg]
        config.interval = interval
        config.heartbeat_interval = heartbeat_interval
        config.bounds = HealthBounds(
            probation_seconds=probation,
            max_error_rate=max_error_rate,
            min_requests=min_requests,
            spool_alert=spool_alert,
            backlog_alert=backlog_alert,
        )
        runner = Agent(config)
        err_console.print(
            f"agent of site {site}: control {config.control_url}, server {config.serving_url}"
            f"{' (owned)' if config.serve_args is not None else ''}, state {config.state_dir}",
            highlight=False,
        )
        if once:
            runner.start()
            runner.close()
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        runner.run(stop)


def _workspace(path: Path | None) -> Workspace | None:
    from edgeloop.settings import get_settings
    from edgeloop.workspace.loader import CONFIG_NAME

    root = path or get_settings().workspace
    if not (root / CONFIG_NAME).exists() and not root.is_file():
        if path is not None:
            raise ConfigError(f"no {CONFIG_NAME} in {path}")
        return None
    return Workspace.load(root)

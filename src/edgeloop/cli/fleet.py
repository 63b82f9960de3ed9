"""`edgeloop fleet`: sites, join tokens, deployments and rollouts on the control plane."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from edgeloop.cli.common import (
    WorkspaceOption,
    console,
    friendly_errors,
    load_workspace,
    print_json,
)
from edgeloop.errors import ConfigError
from edgeloop.fleet.auth import read_secret_file
from edgeloop.fleet.client import FleetClient
from edgeloop.settings import get_settings

app = typer.Typer(
    help="Manage the fleet on the control plane: sites, join tokens, deployments, rollouts.",
    no_args_is_help=True,
)
rollout_app = typer.Typer(
    help="Start, watch, pause, resume, abort and roll back rollouts.", no_args_is_help=True
)
app.add_typer(rollout_app, name="rollout")

ControlOption = typer.Option(
    None,
    "--control",
    help="Control-plane URL. Default: $EDGELOOP_CONTROL_URL or http://127.0.0.1:8700.",
    show_default=False,
)
TokenFileOption = typer.Option(
    None,
    "--token-file",
    help="File holding your API token (mode 0600). Default: $EDGELOOP_TOKEN.",
    show_default=False,
)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds from `90s`, `15m`, `1h`, `30d`, `2w` or a plain number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration; use e.g. 90s, 15m, 1h, 30d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def control_client(control: str | None, token_file: Path | None) -> FleetClient:
    """A client for the control plane from options, the environment or defaults."""
    settings = get_settings()
    url = control or settings.control_url or "http://127.0.0.1:8700"
    if token_file is not None:
        try:
            token = read_secret_file(token_file)
        except OSError as exc:
            raise ConfigError(f"cannot read token file {token_file}: {exc}") from None
    elif settings.token:
        token = settings.token
    else:
        raise ConfigError(
            "no API token: give --token-file FILE (the first admin token is written to "
            "<state>/fleet/admin.token at first start) or set EDGELOOP_TOKEN"
        )
    return FleetClient(url, token)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def parse_labels(items: list[str] | None) -> dict[str, str]:
    labels = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"label {item!r} must look like key=value")
        labels[key.strip()] = value.strip()
    return labels


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8700, help="Port to listen on."),
    db: str = typer.Option(
        None,
        "--db",
        help="Database URL: sqlite:///path or postgresql://user@host/db. "
        "Default: fleet.db in the state directory.",
    ),
    state_dir: Path = typer.Option(
        None,
        "--state-dir",
        help="Where the database, admin token and signing key live. "
        "Default: <workspace>/state/<core site>/fleet.",
    ),
    tick: float = typer.Option(1.0, help="Seconds between rollout gate evaluations."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Run the control plane on its own (`edgeloop core` runs it too)."""
    from edgeloop.fleet.app import serve_control_plane
    from edgeloop.fleet.control import ControlSettings

    with friendly_errors():
        if state_dir is not None:
            settings = ControlSettings(state_dir=state_dir)
        else:
            settings = ControlSettings.for_workspace(load_workspace(workspace))
        if db:
            settings.db_url = db
        settings.tick_interval = tick
        console.print(
            f"control plane on http://{host}:{port} (admin token: {settings.admin_token_path})"
        )
        serve_control_plane(settings, host=host, port=port)


@app.command("sites")
def sites(
    selector: str = typer.Option(
        "", "--selector", "-l", help="Only sites matching, e.g. 'region=eu,hw!=gpu'."
    ),
    as_json: bool = JsonOption,
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """List sites with their labels, loaded models, health and last heartbeat."""
    with friendly_errors():
        rows = control_client(control, token_file).sites(selector)
        if as_json:
            for row in rows:
                print_json(row)
            return
        table = Table("site", "labels", "loaded", "healthy", "last seen", "backlog", "drops")
        for row in rows:
            table.add_row(
                row["name"],
                _labels(row["labels"]),
                _labels(row["loaded"]),
                {True: "[green]yes[/]", False: "[red]no[/]"}.get(row["healthy"], "-"),
                _when(row["last_seen"]),
                str(row["backlog"] if row["backlog"] is not None else "-"),
                str(row["capture_drops"] if row["capture_drops"] is not None else "-"),
            )
        console.print(table)


@app.command("join-token")
def join_token(
    site: str = typer.Argument(..., help="Name of the new site."),
    label: list[str] = typer.Option(None, "--label", help="A label key=value (repeatable)."),
    expires: str = typer.Option("1h", help="How long the token can be used, e.g. 15m, 1h."),
    as_json: bool = JsonOption,
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """Create a one-time join token a new site trades for its agent token."""
    with friendly_errors():
        result = control_client(control, token_file).join_token(
            site, parse_labels(label), parse_duration(expires)
        )
        if as_json:
            print_json(result)
        else:
            console.print(result["join_token"], highlight=False)


@app.command("deploy")
def deploy(
    name: str = typer.Argument(..., help="Deployment name."),
    model: str = typer.Option(..., "--model", "-m", help="Model name."),
    version: str = typer.Option(None, "--version", "-v", help="Model version to run (or --alias)."),
    alias: str = typer.Option(
        None,
        "--alias",
        "-a",
        help="Follow a registry alias (e.g. champion): each move of the alias starts a rollout "
        "with --waves and the gate options.",
    ),
    selector: str = typer.Option(
        "", "--selector", "-l", help="Sites it applies to, e.g. 'region=eu'. Default: every site."
    ),
    waves: str = typer.Option("5,25,100", help="Waves of the rollouts an alias move starts."),
    hold: str = typer.Option("60s", help="Alias rollouts: healthy time before the next wave."),
    max_error_rate: float = typer.Option(0.01, help="Alias rollouts: error-rate bound."),
    max_p99_ms: float = typer.Option(None, help="Alias rollouts: p99 latency bound."),
    as_json: bool = JsonOption,
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """Create or change a deployment at once (use `fleet rollout start` to change in waves).

    With --alias the deployment follows the registry: promoting a new champion moves the
    fleet to it through a rollout."""
    with friendly_errors():
        if (version is None) == (alias is None):
            raise ConfigError("give --version or --alias (one of them)")
        gate = None
        if alias is not None:
            gate = {
                "min_healthy_seconds": parse_duration(hold),
                "max_error_rate": max_error_rate,
                "max_p99_ms": max_p99_ms,
            }
        result = control_client(control, token_file).deploy(
            name, model, version, selector, alias=alias, waves=waves, gate=gate
        )
        if as_json:
            print_json(result)
        else:
            follows = f" (following {model}@{alias})" if alias else ""
            console.print(
                f"deployment {name}: {model} {result['version']}{follows} on '{selector or '*'}' "
                f"({result['sites_changed']} site(s) changed)",
                highlight=False,
            )


@rollout_app.command("start")
def rollout_start(
    deployment: str = typer.Argument(..., help="Deployment to move."),
    version: str = typer.Argument(..., help="Version to move it to."),
    waves: str = typer.Option(
        "5,25,100",
        help="Cumulative percentages, or 'label:ring=canary,early' for one wave per label value.",
    ),
    hold: str = typer.Option("60s", help="How long a wave must stay healthy before the next."),
    max_error_rate: float = typer.Option(0.01, help="Halt when a site's error rate exceeds it."),
    max_p99_ms: float = typer.Option(None, help="Halt when a site's p99 latency exceeds it."),
    min_quality: float = typer.Option(None, help="Halt when live quality drops below it."),
    wave_timeout: str = typer.Option("15m", help="Halt when a wave has not converged by then."),
    as_json: bool = JsonOption,
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """Start a rollout of a deployment to a new version, wave by wave."""
    with friendly_errors():
        gate: dict[str, Any] = {
            "min_healthy_seconds": parse_duration(hold),
            "max_error_rate": max_error_rate,
            "max_p99_ms": max_p99_ms,
            "min_quality": min_quality,
            "wave_timeout_seconds": parse_duration(wave_timeout),
        }
        result = control_client(control, token_file).start_rollout(deployment, version, waves, gate)
        if as_json:
            print_json(result)
        else:
            console.print(
                f"rollout {result['id']}: {deployment} {result['from_version']} -> {version}, "
                f"waves {[len(w['sites']) for w in result['waves']]}",
                highlight=False,
            )


def _rollout_view(detail: dict[str, Any]) -> Group:
    head = (
        f"[bold]{detail['id']}[/] {detail['deployment']} ({detail['model']}) "
        f"{detail['from_version']} -> {detail['to_version']}  state [bold]{detail['state']}[/]"
        f"  wave {detail['current_wave'] + 1}/{detail['wave_count']}"
    )
    parts: list[Any] = [head]
    if detail["reason"]:
        parts.append(f"  {detail['reason']}")
    for wave in detail["waves"]:
        on = sum(1 for s in wave["sites"] if s["on_target"])
        table = Table(
            "site",
            "loaded",
            "healthy",
            "last seen",
            "problem",
            title=f"wave {wave['index'] + 1}: {wave['state']} ({on}/{len(wave['sites'])} on "
            f"{detail['to_version']})",
            title_justify="left",
        )
        for site in wave["sites"][:50]:
            table.add_row(
                site["site"],
                site["loaded"] or "-",
                {True: "[green]yes[/]", False: "[red]no[/]"}.get(site["healthy"], "-"),
                _when(site["last_seen"]),
                site["problem"] or "",
            )
        if len(wave["sites"]) > 50:
            table.caption = f"... and {len(wave['sites']) - 50} more"
        parts.append(table)
    return Group(*parts)


@rollout_app.command("status")
def rollout_status(
    rollout_id: str = typer.Argument(None, help="Rollout id; without it, list rollouts."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Keep the view live until it ends."),
    interval: float = typer.Option(2.0, help="Seconds between refreshes with --watch."),
    as_json: bool = JsonOption,
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """Show rollouts, or one rollout's waves and sites (live with --watch)."""
    with friendly_errors():
        client = control_client(control, token_file)
        if rollout_id is None:
            rows = client.rollouts()
            if as_json:
                for row in rows:
                    print_json(row)
                return
            table = Table("id", "deployment", "from", "to", "state", "wave", "sites", "started")
            table.columns[0].min_width = 15  # ids are typed back into commands: never cut them
            for row in rows:
                table.add_row(
                    row["id"],
                    row["deployment"],
                    row["from_version"],
                    row["to_version"],
                    row["state"],
                    f"{row['current_wave'] + 1}/{row['wave_count']}",
                    str(row["site_count"]),
                    _when(row["created_at"]),
                )
            console.print(table)
            return
        detail = client.rollout(rollout_id)
        if as_json:
            print_json(detail)
            return
        if not watch:
            console.print(_rollout_view(detail))
            return
        try:
            with Live(_rollout_view(detail), console=console, refresh_per_second=4) as live:
                while detail["state"] in ("running", "paused"):
                    time.sleep(interval)
                    detail = client.rollout(rollout_id)
                    live.update(_rollout_view(detail))
        except KeyboardInterrupt:
            pass


def _action(action: str, doc: str) -> None:
    def command(
        rollout_id: str = typer.Argument(..., help="Rollout id."),
        reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
        as_json: bool = JsonOption,
        control: str = ControlOption,
        token_file: Path = TokenFileOption,
    ) -> None:
        with friendly_errors():
            result = control_client(control, token_file).act(rollout_id, action, reason)
            if as_json:
                print_json(result)
            else:
                console.print(f"rollout {rollout_id}: {result['state']}", highlight=False)

    command.__doc__ = doc
    rollout_app.command(action)(command)


_action("pause", "Pause a rollout: no further wave starts until it is resumed.")
_action("resume", "Resume a paused rollout.")
_action("abort", "Stop a rollout: no further waves; sites already moved keep the new version.")
_action("rollback", "Roll back a rollout: every site it reached goes back to the old version.")

"""`edgeloop tokens`: API tokens for people (admins only)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgeloop.cli.common import console, friendly_errors, print_json
from edgeloop.cli.fleet import (
    ControlOption,
    JsonOption,
    TokenFileOption,
    _when,
    control_client,
    parse_duration,
)
from edgeloop.fleet.auth import write_secret_file

app = typer.Typer(
    help="Create, list and revoke API tokens of the control plane.", no_args_is_help=True
)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Who or what the token is for."),
    role: str = typer.Option(..., "--role", "-r", help="admin, operator, scientist or viewer."),
    expires: str = typer.Option(None, help="Lifetime, e.g. 12h or 30d. Default: never expires."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Write the token to this file (0600) instead of printing it."
    ),
    as_json: bool = JsonOption,
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """Create a token; it is shown once and only its hash is stored."""
    with friendly_errors():
        seconds = parse_duration(expires) if expires else None
        result = control_client(control, token_file).create_token(name, role, seconds)
        if out is not None:
            write_secret_file(out, result.pop("token"))
            result["token_file"] = str(out)
        if as_json:
            print_json(result)
        elif out is not None:
            console.print(f"token {result['id']} ({role}) written to {out}", highlight=False)
        else:
            console.print(result["token"], highlight=False)


@app.command("ls")
def ls(
    as_json: bool = JsonOption,
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """List tokens of your project (ids, roles, sites, expiry; never the secrets)."""
    with friendly_errors():
        rows = control_client(control, token_file).tokens()
        if as_json:
            for row in rows:
                print_json(row)
            return
        table = Table("id", "name", "role", "site", "created", "expires", "state")
        table.columns[0].min_width = 20  # ids are typed back into `tokens revoke`: never cut them
        for row in rows:
            state = "revoked" if row["revoked_at"] else "used" if row["used_at"] else "active"
            table.add_row(
                row["id"],
                row["name"],
                row["role"],
                row["site"] or "-",
                _when(row["created_at"]),
                _when(row["expires_at"]),
                state,
            )
        console.print(table)


@app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="Token id (see `edgeloop tokens ls`)."),
    control: str = ControlOption,
    token_file: Path = TokenFileOption,
) -> None:
    """Revoke a token; calls with it are refused from then on."""
    with friendly_errors():
        control_client(control, token_file).revoke_token(token_id)
        console.print(f"revoked {token_id}", highlight=False)

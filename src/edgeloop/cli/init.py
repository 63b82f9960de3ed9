"""`edgeloop init`: create a workspace."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeloop.cli.common import console, friendly_errors
from edgeloop.workspace import init_workspace


def init(
    directory: Path = typer.Argument(Path(), help="Directory for the new workspace."),
    project: str = typer.Option(
        None, "--project", "-p", help="Project name (default: directory name)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing edgeloop.yaml."),
) -> None:
    """Create a workspace: edgeloop.yaml with a core and two edge sites on directory stores."""
    with friendly_errors():
        ws = init_workspace(directory, project, force=force)
    console.print(f"Created workspace [bold]{ws.config.project}[/] in {ws.root}")
    for site in ws.sites():
        console.print(f"  {site.tier.value:5} {site.name:8} store={site.store}")
    console.print(f"Next: [bold]edgeloop replicate --workspace {directory} --once[/]")

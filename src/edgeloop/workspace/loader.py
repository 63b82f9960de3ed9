"""Load and write `edgeloop.yaml`, turning validation errors into messages with file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgeloop.errors import ConfigError
from edgeloop.workspace.config import WorkspaceConfig

CONFIG_NAME = "edgeloop.yaml"


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest ancestor that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            match = node.value[part]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def parse_config(text: str, source: str = CONFIG_NAME) -> WorkspaceConfig:
    """Validate YAML text as a workspace config; errors name `source`, the line and the field."""
    try:
        raw: Any = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'project' and 'sites' at the top")
    try:
        return WorkspaceConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "(top level)"
            where = _line_of(root, loc)
            at = f"{source}:{where}" if where else source
            lines.append(f"{at}: {field}: {err['msg']}")
        raise ConfigError(
            "invalid workspace config:\n  "
            + "\n  ".join(lines)
            + f"\nFix the fields above in {source} (see docs/workspace.md for the schema)."
        ) from None


def load_config(path: Path) -> WorkspaceConfig:
    """Read and validate `path` (a file, or a directory holding edgeloop.yaml)."""
    file = path / CONFIG_NAME if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no workspace here; create one with `edgeloop init {file.parent}`"
        ) from None
    return parse_config(text, str(file))


def dump_config(config: WorkspaceConfig) -> str:
    """The config as YAML, with aliases (`from`/`to`) and without unset defaults."""
    data = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data.setdefault("project", config.project)
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False)


class _BlockDumper(yaml.SafeDumper):
    """A safe dumper that writes multi-line strings (PEM keys) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)

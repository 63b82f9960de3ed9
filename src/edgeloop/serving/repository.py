"""The model repository directory (`<repo>/<model>/<version>/`) and the admin token."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from edgeloop.errors import ConfigError, ServingError
from edgeloop.model.manifest import MANIFEST_NAME, MODEL_NAME


@dataclass(frozen=True, order=True)
class RepositoryEntry:
    """One version directory found in the repository."""

    name: str
    version: int
    path: Path


def scan_repository(root: Path) -> dict[str, list[RepositoryEntry]]:
    """Model name -> its complete version directories, oldest first.

    A version counts once its directory holds a manifest; writers create it elsewhere and
    rename it in, so a half-written version is never seen. Symlinks and odd names are skipped.
    """
    found: dict[str, list[RepositoryEntry]] = {}
    if not root.is_dir():
        return found
    for model_dir in root.iterdir():
        if model_dir.is_symlink() or not model_dir.is_dir() or not MODEL_NAME.match(model_dir.name):
            continue
        versions = []
        for version_dir in model_dir.iterdir():
            if (
                version_dir.name.isdigit()
                and not version_dir.is_symlink()
                and version_dir.is_dir()
                and (version_dir / MANIFEST_NAME).is_file()
            ):
                versions.append(RepositoryEntry(model_dir.name, int(version_dir.name), version_dir))
        if versions:
            found[model_dir.name] = sorted(versions)
    return found


def version_path(root: Path, name: str, version: int) -> Path:
    """The directory of `name` version `version` inside the repository (names are checked)."""
    if not MODEL_NAME.match(name) or version < 1:
        raise ServingError(f"invalid model name {name!r} or version {version}")
    return root / name / str(version)


def ensure_token(path: Path) -> tuple[str, bool]:
    """The admin token in `path`; when the file is missing, mint one there (mode 0600).

    Returns the token and whether it was just created.
    """
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path}: token file is readable by others; run `chmod 600 {path}`")
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise ConfigError(f"{path}: token is shorter than 16 characters; use a longer one")
        return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token, True


def token_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>` (in constant time)."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())

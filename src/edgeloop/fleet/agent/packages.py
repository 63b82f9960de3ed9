"""Model packages at an edge: found in the site's own store (replicated down from the core's
`models/<name>/<version>/`), verified, and materialised into the server's repository."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from edgeloop.errors import PackageVerificationFailed
from edgeloop.model.manifest import SIGNATURE_NAME
from edgeloop.registry.registry import download_package, package_prefix
from edgeloop.registry.signing import signed_files, verify_package
from edgeloop.serving.repository import version_path
from edgeloop.store.base import ObjectStore


class PackageMissing(PackageVerificationFailed):
    """The package is not (yet) in the site's store; replication has not brought it."""


class LocalPackages:
    """Packages of one site: its store, the trusted public key, and the server's repository."""

    def __init__(
        self,
        store: ObjectStore,
        public_key: str,
        repository: Path,
        *,
        incomplete_grace: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.public_key = public_key
        self.repository = repository
        self.incomplete_grace = incomplete_grace
        self.clock = clock
        self._incomplete_since: dict[str, float] = {}

    def path(self, model: str, version: str) -> Path:
        return version_path(self.repository, model, _number(model, version))

    def present(self, model: str, version: str) -> bool:
        prefix = package_prefix(model, _number(model, version))
        return next(iter(self.store.list(prefix)), None) is not None

    def install(self, model: str, version: str, *, installed: str | None = None) -> Path:
        """Verify the package of `model:version` and put it in the repository; its path.

        Every check (layout, signer, file set, hashes, and that the signed manifest names this
        very model and version) passes before the server can see the directory. With
        `installed`, an older version is refused (pass None for a rollback).
        """
        number = _number(model, version)
        dest = self.path(model, version)
        floor = int(installed) if installed is not None and installed.isdigit() else None
        if dest.is_dir():  # installed before: only this agent writes here, check it again
            verified = verify_package(dest, self.public_key, installed_version=floor)
        else:
            prefix = package_prefix(model, number)
            if not self.present(model, version):
                raise PackageMissing(
                    f"{prefix} is not in this site's store yet; it arrives by replication "
                    "from the core (`edgeloop replicate`)"
                )
            self._wait_until_complete(prefix)
            verified = download_package(
                self.store, prefix, dest, self.public_key, installed_version=floor
            )
        manifest = verified.manifest
        if manifest.name != model or manifest.version != number:
            shutil.rmtree(dest, ignore_errors=True)
            raise PackageVerificationFailed(
                f"{package_prefix(model, number)} holds a signed package of "
                f"{manifest.name}:{manifest.version}, not {model}:{version}; rejected"
            )
        return dest

    def _wait_until_complete(self, prefix: str) -> None:
        """Raise PackageMissing while the package is still arriving: objects appear whole but
        not in order, so a signature that names files not here yet (or no signature yet) means
        replication is under way. Past `incomplete_grace` seconds it is verified as it is, and
        an incomplete package is rejected like any other bad one."""
        keys = {info.key.removeprefix(prefix) for info in self.store.list(prefix)}
        missing: set[str] | None = None
        if SIGNATURE_NAME in keys:
            try:
                with self.store.get(prefix + SIGNATURE_NAME) as reader:
                    signature = b"".join(reader)
                missing = set(signed_files(signature)) - keys
            except PackageVerificationFailed:
                missing = set()  # unreadable: let verification say why
        if missing == set():
            self._incomplete_since.pop(prefix, None)
            return
        since = self._incomplete_since.setdefault(prefix, self.clock())
        if self.clock() - since < self.incomplete_grace:
            waiting = "its signature" if missing is None else ", ".join(sorted(missing))
            raise PackageMissing(
                f"{prefix} is still arriving by replication (waiting for {waiting})"
            )
        self._incomplete_since.pop(prefix, None)

    def remove(self, model: str, version: str) -> None:
        """Take a version out of the repository (a bad one, or one no longer kept)."""
        shutil.rmtree(self.path(model, version), ignore_errors=True)

    def prune(self, model: str, keep: set[str]) -> None:
        """Remove every version of `model` from the repository except `keep`."""
        root = self.repository / model
        if not root.is_dir():
            return
        for child in root.iterdir():
            if child.name.isdigit() and child.name not in keep and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)


def _number(model: str, version: str) -> int:
    if not version.isdigit() or int(version) < 1:
        raise PackageVerificationFailed(
            f"{model}:{version}: registry versions are positive integers; refusing {version!r}"
        )
    return int(version)

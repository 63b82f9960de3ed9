"""An edge's packages while replication is still bringing them: an incomplete package is
waited for (not rejected as tampered) for a grace period, then verified as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.errors import PackageVerificationFailed
from edgeloop.fleet.agent.packages import LocalPackages, PackageMissing
from edgeloop.registry import generate_signing_key, sign_package
from edgeloop.store import LocalStore
from edgeloop.testing.serving import make_package


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def signed_package(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "keys" / "signing-key.pem"
    public = generate_signing_key(key)
    package = make_package(tmp_path / "src", name="demo", version=1)
    sign_package(package, key)
    return package, public


def arrive(store: LocalStore, package: Path, names: list[str]) -> None:
    for name in names:
        store.put(f"models/demo/1/{name}", (package / name).read_bytes())


def test_a_package_still_arriving_is_waited_for_then_installed(tmp_path: Path) -> None:
    package, public = signed_package(tmp_path)
    files = sorted(p.name for p in package.iterdir())
    assert "model.sig" in files and len(files) >= 3
    store, clock = LocalStore(tmp_path / "edge"), Clock()
    packages = LocalPackages(store, public, tmp_path / "repo", incomplete_grace=30, clock=clock)

    arrive(store, package, [f for f in files if f != "model.sig"][:1])  # no signature yet
    with pytest.raises(PackageMissing, match="waiting for its signature"):
        packages.install("demo", "1")
    arrive(store, package, ["model.sig"])  # the signature before the files it names
    clock.now = 10
    with pytest.raises(PackageMissing, match="still arriving"):
        packages.install("demo", "1")
    assert not (tmp_path / "repo" / "demo" / "1").exists()

    arrive(store, package, files)
    assert packages.install("demo", "1") == tmp_path / "repo" / "demo" / "1"


def test_an_incomplete_package_past_the_grace_is_rejected(tmp_path: Path) -> None:
    package, public = signed_package(tmp_path)
    files = sorted(p.name for p in package.iterdir())
    store, clock = LocalStore(tmp_path / "edge"), Clock()
    packages = LocalPackages(store, public, tmp_path / "repo", incomplete_grace=30, clock=clock)
    arrive(store, package, [f for f in files if f != "model.onnx"])
    with pytest.raises(PackageMissing, match=r"model\.onnx"):
        packages.install("demo", "1")
    clock.now = 31
    with pytest.raises(PackageVerificationFailed, match="missing") as refused:
        packages.install("demo", "1")
    assert not isinstance(refused.value, PackageMissing)
    assert not (tmp_path / "repo" / "demo" / "1").exists()

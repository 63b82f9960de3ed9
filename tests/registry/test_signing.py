"""Signing and strict verification of model packages, and the tampered-package suite:
every variant is rejected before any byte of the package is deserialized."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest

from edgeloop.errors import (
    ConfigError,
    DowngradeRefused,
    PackageError,
    PackageVerificationFailed,
    UntrustedModel,
)
from edgeloop.model.manifest import MANIFEST_NAME, SIGNATURE_NAME, ModelManifest
from edgeloop.registry import open_verified, sign_package, verifier, verify_package
from edgeloop.registry.signing import load_private_key, public_key_pem
from edgeloop.serving.package import load_package
from edgeloop.serving.runtimes import open_runtime
from edgeloop.testing.serving import make_package

from .conftest import KeyPair


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_sign_then_verify_round_trip(signed: Path, keys: KeyPair) -> None:
    verified = verify_package(signed, keys.public)
    assert verified.manifest.ref == "demo:1"
    assert set(verified.files) == {MANIFEST_NAME, "model.onnx"}
    assert (signed / SIGNATURE_NAME).is_file()


def test_signature_is_an_openssf_model_signing_bundle(signed: Path) -> None:
    bundle = json.loads((signed / SIGNATURE_NAME).read_text())
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle")
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    resources = {r["name"]: r for r in statement["predicate"]["resources"]}
    assert set(resources) == {MANIFEST_NAME, "model.onnx"}
    assert all(r["algorithm"] == "sha256" for r in resources.values())


def test_the_model_signing_library_verifies_our_signature(
    signed: Path, tmp_path: Path, keys: KeyPair
) -> None:
    # Interoperability: the library's own API, with its own defaults, accepts the package.
    from model_signing import verifying

    pub = tmp_path / "pub.pem"
    pub.write_text(keys.public)
    verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
        signed, signed / SIGNATURE_NAME
    )


def test_resigning_replaces_the_signature(signed: Path, other_keys: KeyPair) -> None:
    sign_package(signed, other_keys.private)
    assert verify_package(signed, other_keys.public).manifest.version == 1
    assert not list(signed.parent.glob("*.tmp"))


def test_keys_are_p256_and_private_key_is_0600(keys: KeyPair) -> None:
    assert stat.S_IMODE(keys.private.stat().st_mode) == 0o600
    key = load_private_key(keys.private)
    assert key.curve.name == "secp256r1"
    assert public_key_pem(key) == keys.public


def test_non_p256_and_garbage_keys_are_refused(tmp_path: Path, package: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "p384.pem"
    path.write_bytes(p384.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))  # fmt: skip
    with pytest.raises(ConfigError, match="P-256"):
        sign_package(package, path)
    with pytest.raises(ConfigError, match="no signing key"):
        sign_package(package, tmp_path / "missing.pem")
    with pytest.raises(ConfigError):
        verifier("not a key")


# -- the tampered-package suite -----------------------------------------------------------
def _resign_with(other: KeyPair) -> Callable[[Path, Path], None]:
    def tamper(pkg: Path, tmp: Path) -> None:
        sign_package(pkg, other.private)

    return tamper


def _edit_signed_digest(pkg: Path, tmp: Path) -> None:
    """Tamper with the model, then rewrite the digest inside the signature to match it."""
    flip_byte(pkg / "model.onnx")
    from edgeloop.registry.signing import sha256_file

    bundle = json.loads((pkg / SIGNATURE_NAME).read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    for resource in statement["predicate"]["resources"]:
        if resource["name"] == "model.onnx":
            resource["digest"] = sha256_file(pkg / "model.onnx")
    payload = json.dumps(statement).encode()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    (pkg / SIGNATURE_NAME).write_text(json.dumps(bundle))


def _signature_from_other_version(keys: KeyPair) -> Callable[[Path, Path], None]:
    def tamper(pkg: Path, tmp: Path) -> None:
        other = make_package(tmp / "v2", name="demo", version=2, seed=7)
        sign_package(other, keys.private)
        shutil.copy(other / SIGNATURE_NAME, pkg / SIGNATURE_NAME)

    return tamper


def _manifest_from_other_version(keys: KeyPair) -> Callable[[Path, Path], None]:
    def tamper(pkg: Path, tmp: Path) -> None:
        other = make_package(tmp / "v2", name="demo", version=2, seed=7)
        sign_package(other, keys.private)  # a validly signed manifest, of another package
        shutil.copy(other / MANIFEST_NAME, pkg / MANIFEST_NAME)

    return tamper


def _symlink_outside(pkg: Path, tmp: Path) -> None:
    """Same bytes, but the model file is a symlink to a copy outside the package."""
    outside = tmp / "outside.onnx"
    shutil.copy(pkg / "model.onnx", outside)
    (pkg / "model.onnx").unlink()
    (pkg / "model.onnx").symlink_to(outside)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


TAMPERS: dict[str, Callable[..., Callable[[Path, Path], None]]] = {
    "flipped byte in model file": lambda k, o: lambda p, t: flip_byte(p / "model.onnx"),
    "flipped last byte of model file": lambda k, o: lambda p, t: flip_byte(p / "model.onnx", -1),
    "flipped byte in manifest": lambda k, o: lambda p, t: flip_byte(p / MANIFEST_NAME),
    "manifest version bumped": lambda k, o: (
        lambda p, t: (p / MANIFEST_NAME).write_text(
            (p / MANIFEST_NAME).read_text().replace('"version": 1', '"version": 9')
        )
    ),
    "extra file": lambda k, o: lambda p, t: (p / "notes.txt").write_text("hello"),
    "extra file in a subdirectory": lambda k, o: (
        lambda p, t: ((p / "extra").mkdir(), (p / "extra" / "weights.onnx").write_bytes(b"x"))
    ),
    "extra .gitignore": lambda k, o: lambda p, t: (p / ".gitignore").write_text("*"),
    "missing model file": lambda k, o: lambda p, t: (p / "model.onnx").unlink(),
    "missing manifest": lambda k, o: lambda p, t: (p / MANIFEST_NAME).unlink(),
    "renamed model file": lambda k, o: lambda p, t: (p / "model.onnx").rename(p / "m.onnx"),
    "symlink to a file inside": lambda k, o: (
        lambda p, t: (p / "alias.onnx").symlink_to(p / "model.onnx")
    ),
    "model file is a symlink outside": lambda k, o: _symlink_outside,
    "symlinked directory": lambda k, o: lambda p, t: (p / "dir").symlink_to(t),
    "signed by a different key": lambda k, o: _resign_with(o),
    "signature missing": lambda k, o: lambda p, t: (p / SIGNATURE_NAME).unlink(),
    "signature truncated": lambda k, o: lambda p, t: _truncate(p / SIGNATURE_NAME),
    "signature byte flipped": lambda k, o: lambda p, t: flip_byte(p / SIGNATURE_NAME),
    "signature emptied": lambda k, o: lambda p, t: (p / SIGNATURE_NAME).write_bytes(b""),
    "signature not json": lambda k, o: lambda p, t: (p / SIGNATURE_NAME).write_bytes(b"\x80\x04"),
    "signed digest rewritten to match tampered model": lambda k, o: _edit_signed_digest,
    "signature of another version": lambda k, o: _signature_from_other_version(k),
    "manifest of another signed version": lambda k, o: _manifest_from_other_version(k),
    "signature file is a symlink": lambda k, o: (
        lambda p, t: (
            shutil.move(p / SIGNATURE_NAME, t / "sig"),
            (p / SIGNATURE_NAME).symlink_to(t / "sig"),
        )
    ),
}


class DeserializationSpy:
    """Counts every way the package's bytes could be deserialized: the manifest parsed, the
    ONNX model read by onnx or onnxruntime, or the loader handed the package."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        original_validate = ModelManifest.model_validate_json.__func__  # type: ignore[attr-defined]

        def counting_validate(cls: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append("manifest")
            return original_validate(cls, *args, **kwargs)

        def refuse(what: str) -> Callable[..., Any]:
            def hook(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(what)
                raise AssertionError(f"{what} reached with a tampered package")

            return hook

        monkeypatch.setattr(ModelManifest, "model_validate_json", classmethod(counting_validate))
        monkeypatch.setattr(onnxruntime, "InferenceSession", refuse("onnxruntime"))
        monkeypatch.setattr(onnx, "load", refuse("onnx.load"))
        monkeypatch.setattr(onnx, "load_model", refuse("onnx.load_model"))

    def loader(self, package: Any) -> Any:
        self.calls.append("loader")
        return package


@pytest.mark.parametrize("variant", sorted(TAMPERS))
def test_tampered_package_is_rejected_before_deserialization(
    variant: str,
    signed: Path,
    keys: KeyPair,
    other_keys: KeyPair,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    TAMPERS[variant](keys, other_keys)(signed, scratch)
    spy = DeserializationSpy(monkeypatch)
    with pytest.raises(PackageVerificationFailed) as caught:
        open_verified(signed, keys.public, spy.loader)
    assert spy.calls == [], f"{variant}: reached {spy.calls} before rejecting"
    assert "rejected" in str(caught.value) or "unsigned" in str(caught.value)
    # The serving loader with the registry's verifier refuses it too, and loads nothing.
    with pytest.raises(PackageError):
        load_package(signed, verify=verifier(keys.public))
    assert spy.calls == []


def test_downgrade_is_refused_before_the_model_is_loaded(
    tmp_path: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = make_package(tmp_path / "pk", name="demo", version=3)
    sign_package(older, keys.private)
    spy = DeserializationSpy(monkeypatch)
    with pytest.raises(DowngradeRefused, match="older than the installed version 4"):
        open_verified(older, keys.public, spy.loader, installed_version=4)
    # Only the verified manifest was read; no model byte, no loader.
    assert spy.calls == ["manifest"]
    assert open_verified(older, keys.public, spy.loader, installed_version=3).manifest.version == 3


def test_untampered_package_reaches_the_loader_once(
    signed: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = DeserializationSpy(monkeypatch)
    verified = open_verified(signed, keys.public, spy.loader)
    assert spy.calls == ["manifest", "loader"]
    assert verified.manifest.name == "demo"


def test_verified_package_serves_predictions(signed: Path, keys: KeyPair) -> None:
    loaded = load_package(signed, verify=verifier(keys.public))
    runtime = open_runtime(loaded)
    try:
        x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
        outputs = runtime.predict({loaded.manifest.inputs[0].name: x})
        assert len(next(iter(outputs.values()))) == 3
    finally:
        runtime.close()


def test_signed_pickle_is_still_refused(tmp_path: Path, keys: KeyPair) -> None:
    pkg = make_package(tmp_path / "pk")
    (pkg / "model.pkl").write_bytes(b"\x80\x04\x95")
    sign_package(pkg, keys.private)
    verify_package(pkg, keys.public)  # the signature is fine ...
    with pytest.raises(UntrustedModel):  # ... but pickle is refused, signed or not
        load_package(pkg, verify=verifier(keys.public))


def test_unreadable_directory_entries_are_not_followed(signed: Path, keys: KeyPair) -> None:
    os.mkfifo(signed / "pipe")
    with pytest.raises(PackageVerificationFailed, match="not a regular file"):
        verify_package(signed, keys.public)


def test_package_dir_that_is_a_symlink_is_refused(
    signed: Path, keys: KeyPair, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(signed)
    with pytest.raises(PackageVerificationFailed, match="symlink"):
        verify_package(link, keys.public)


def test_the_model_signing_cli_verifies_our_signature(signed: Path, tmp_path: Path,
                                                      keys: KeyPair) -> None:  # fmt: skip
    import subprocess
    import sys

    pub = tmp_path / "pub.pem"
    pub.write_text(keys.public)
    cli = Path(sys.executable).with_name("model_signing")
    args = [str(cli), "verify", "key", str(signed), "--signature", str(signed / SIGNATURE_NAME),
            "--public_key", str(pub)]  # fmt: skip
    ok = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    flip_byte(signed / "model.onnx")
    bad = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0

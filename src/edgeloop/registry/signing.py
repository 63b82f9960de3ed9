"""Sign and verify model package directories in the OpenSSF model signing format.

Signatures are made with the `model-signing` library (a Sigstore bundle holding a DSSE
envelope over an in-toto statement that lists every file's SHA-256), with an EC P-256 key.
Verification is strict, and it is complete before any byte of the package is parsed:
the directory must hold regular files only, exactly the files that were signed (nothing
extra, missing or renamed), each with its signed SHA-256, signed by the trusted key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgeloop.errors import ConfigError, DowngradeRefused, PackageVerificationFailed
from edgeloop.model.manifest import MANIFEST_NAME, SIGNATURE_NAME, ModelManifest

SIGNING_KEY_NAME = "signing-key.pem"  # in the core site's state directory
MAX_SIGNATURE_BYTES = 4 * 1024 * 1024
HASH_ALGORITHM: Literal["sha256"] = "sha256"


# -- keys ----------------------------------------------------------------------------------
def generate_signing_key(path: Path) -> str:
    """Create an EC P-256 private key at `path` (PEM, mode 0600, never overwritten) and
    return its public key PEM, the one every site trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return public_key_pem(key)


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """The SubjectPublicKeyInfo PEM of `key` (or of a private key's public half)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 private key at `path`; ConfigError says what to do when it is unusable."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(
            f"no signing key at {path}; `edgeloop init` makes one at the core, or pass --key"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"{path} is not an EC P-256 private key; models are signed with P-256")
    return key


def load_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """Parse a trusted public key PEM; ConfigError when it is not an EC P-256 key."""
    raw = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError as exc:
        raise ConfigError(f"the model signing public key is not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ConfigError("the model signing public key must be an EC P-256 key")
    return key


# -- signing -------------------------------------------------------------------------------
def _hashing_config() -> Any:
    """The one hashing layout edgeloop signs and verifies with: a SHA-256 per file, no
    symlinks, only the signature file itself left out (git paths are not special)."""
    from model_signing import hashing

    return (
        hashing.Config()
        .use_file_serialization(hashing_algorithm=HASH_ALGORITHM, allow_symlinks=False)
        .set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False)
    )


def sign_package(package_dir: Path, private_key: Path) -> Path:
    """Sign every file of `package_dir` with the key at `private_key`; writes model.sig.

    The layout is checked first (regular files only), so what is signed is what a
    verifier will accept. An existing signature is replaced atomically.
    """
    from model_signing import signing

    load_private_key(private_key)  # a clear error before the library's own
    root = _package_root(package_dir)
    package_files(root, allow_signature=True)
    target = root / SIGNATURE_NAME
    tmp = root.parent / f".{root.name}.{os.getpid()}.sig.tmp"
    try:
        signing.Config().set_hashing_config(_hashing_config()).use_elliptic_key_signer(
            private_key=private_key
        ).sign(root, tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


# -- verification --------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedPackage:
    """A package whose signature and every file hash verified: its signed file digests and
    (parsed only after verification) its manifest."""

    root: Path
    files: dict[str, str]
    manifest: ModelManifest


def package_files(root: Path, *, allow_signature: bool = False) -> set[str]:
    """Relative paths of the regular files under `root`; refuses symlinks and special files.

    Reads only directory entries (lstat), never file contents.
    """
    files: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise PackageVerificationFailed(
                    f"{root}: {rel} is a symlink; a package holds regular files only, "
                    "so it is rejected"
                )
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise PackageVerificationFailed(f"{root}: {rel} is not a regular file; rejected")
            files.add(rel)
    if not allow_signature:
        files.discard(SIGNATURE_NAME)
    return files


def verify_package(
    package_dir: Path, public_key: str, *, installed_version: int | None = None
) -> VerifiedPackage:
    """Verify `package_dir` against the trusted `public_key` PEM, or raise.

    Checks, in order and before any package byte is parsed: the layout (regular files, no
    symlinks), the signature and its signer, the exact set of signed files, every file's
    SHA-256. Only then is the manifest read; with `installed_version`, an older version is
    refused (DowngradeRefused).
    """
    root = _package_root(package_dir)
    present = package_files(root)
    signature = root / SIGNATURE_NAME
    signature_bytes = _read_signature(root, signature)
    with (
        _private_copy(signature_bytes, ".sig") as sig_copy,
        _private_copy(public_key.encode(), ".pem") as key_copy,
    ):
        load_public_key(public_key)
        signed = _check_signature(root, sig_copy, key_copy)
    # The library ignores nothing but model.sig with our hashing config; this second,
    # independent check of the file set keeps "exactly the signed files" true regardless.
    extra = sorted(present - signed.keys())
    missing = sorted(signed.keys() - present)
    if extra or missing:
        raise PackageVerificationFailed(
            f"{root}: the files differ from the signed ones (extra: {extra or 'none'}, "
            f"missing: {missing or 'none'}); the package is rejected"
        )
    manifest = _read_manifest(root)
    if installed_version is not None and manifest.version < installed_version:
        raise DowngradeRefused(
            f"{root}: {manifest.ref} is older than the installed version {installed_version}; "
            "refusing the downgrade (roll back explicitly to allow it)"
        )
    return VerifiedPackage(root=root, files=signed, manifest=manifest)


def verifier(public_key: str) -> Callable[[Path], None]:
    """A `Verifier` for `edgeloop.serving.package.load_package`: strict verification."""
    load_public_key(public_key)

    def check(path: Path) -> None:
        verify_package(path, public_key)

    return check


def open_verified(
    package_dir: Path,
    public_key: str,
    loader: Callable[[VerifiedPackage], Any],
    *,
    installed_version: int | None = None,
) -> Any:
    """Verify `package_dir`, then hand it to `loader`; the loader never sees a bad package."""
    return loader(verify_package(package_dir, public_key, installed_version=installed_version))


def signed_files(signature: bytes) -> dict[str, str]:
    """The file -> SHA-256 map inside a signature bundle (not verified: use after verify)."""
    try:
        bundle = orjson.loads(signature)
        envelope = bundle["dsseEnvelope"]
        statement = orjson.loads(base64.b64decode(envelope["payload"]))
        resources = statement["predicate"]["resources"]
        if any(r.get("algorithm", HASH_ALGORITHM) != HASH_ALGORITHM for r in resources):
            raise ValueError(f"a file is hashed with something other than {HASH_ALGORITHM}")
        return {str(r["name"]): str(r["digest"]) for r in resources}
    except (ValueError, KeyError, TypeError) as exc:
        raise PackageVerificationFailed(
            f"signature bundle has an unexpected shape: {exc}"
        ) from None


def _package_root(path: Path) -> Path:
    if path.is_symlink():
        raise PackageVerificationFailed(f"{path}: the package directory is a symlink; rejected")
    if not path.is_dir():
        raise PackageVerificationFailed(f"{path}: not a directory; a model package is a directory")
    return path.resolve()


def _read_signature(root: Path, signature: Path) -> bytes:
    try:
        info = signature.lstat()
    except FileNotFoundError:
        raise PackageVerificationFailed(
            f"{root}: no {SIGNATURE_NAME}; the package is unsigned and is rejected "
            "(sign it at the core: `edgeloop models sign`)"
        ) from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SIGNATURE_BYTES:
        raise PackageVerificationFailed(f"{signature}: not a plausible signature file; rejected")
    return signature.read_bytes()


def _check_signature(root: Path, signature: Path, public_key: Path) -> dict[str, str]:
    """Run the library's verification; returns the signed file digests."""
    from model_signing import verifying

    config = verifying.Config().use_elliptic_key_verifier(public_key=public_key)
    config.set_hashing_config(_hashing_config())
    try:
        config.verify(root, signature)
    except Exception as exc:  # the library raises ValueError, protobuf and JSON errors alike
        raise PackageVerificationFailed(
            f"{root}: {_explain(root, signature, exc)}; the package is rejected, do not load it"
        ) from None
    return signed_files(signature.read_bytes())


def _explain(root: Path, signature: Path, exc: Exception) -> str:
    """A readable reason for a failed verification (the decision is already made)."""
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if "key mismatch" in lowered:
        return "signed by a different key than the trusted one"
    if not lowered.startswith("signature mismatch"):
        return f"the signature does not verify ({text})"
    try:  # the envelope verified, so its file list is authentic: name what differs
        signed = signed_files(signature.read_bytes())
    except PackageVerificationFailed:
        return text
    present = package_files(root)
    reasons = [f"{rel}: not signed (extra file)" for rel in sorted(present - signed.keys())]
    reasons += [f"{rel}: signed but missing" for rel in sorted(signed.keys() - present)]
    for rel in sorted(present & signed.keys()):
        if sha256_file(root / rel) != signed[rel]:
            reasons.append(f"{rel}: SHA-256 differs from the signed one")
    return "; ".join(reasons) or text


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of the file at `path`, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


def _read_manifest(root: Path) -> ModelManifest:
    from pydantic import ValidationError

    try:
        return ModelManifest.model_validate_json((root / MANIFEST_NAME).read_bytes())
    except FileNotFoundError:
        raise PackageVerificationFailed(f"{root}: no {MANIFEST_NAME} in the package") from None
    except ValidationError as exc:
        raise PackageVerificationFailed(f"{root}: {MANIFEST_NAME} is invalid: {exc}") from None


@contextmanager
def _private_copy(data: bytes, suffix: str) -> Iterator[Path]:
    """`data` in a fresh 0600 temp file: the library reads paths, and a copy we own cannot
    change between verifying it and reading it again."""
    fd, name = tempfile.mkstemp(prefix="edgeloop-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)

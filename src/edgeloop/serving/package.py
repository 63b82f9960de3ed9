"""Read and check a model package directory before any byte of its model is deserialized."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edgeloop.errors import PackageError, UntrustedModel
from edgeloop.model.manifest import MANIFEST_NAME, ModelFormat, ModelManifest, Runtime

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_PACKAGE_FILES = 1000

# File name endings of formats that run code when loaded: refused even when signed.
CODE_EXECUTING_SUFFIXES = (
    ".pkl", ".pickle", ".joblib", ".dill", ".cloudpickle", ".pt", ".pth", ".ckpt",
    ".h5", ".hdf5", ".keras", ".npy", ".npz", ".sav", ".py", ".pyc", ".so",
)  # fmt: skip
# Which format each runtime serves, and the file ending the model file must have.
RUNTIME_FORMATS = {Runtime.ONNX: ModelFormat.ONNX, Runtime.SKLEARN: ModelFormat.SKOPS}
FORMAT_SUFFIXES = {
    ModelFormat.ONNX: ".onnx",
    ModelFormat.SKOPS: ".skops",
    ModelFormat.SAFETENSORS: ".safetensors",
}
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")

Verifier = Callable[[Path], None]
"""Checks a package directory (signature, hashes) and raises if it must not be loaded."""


@dataclass(frozen=True)
class LoadedPackage:
    """A checked package: its manifest and the absolute path of the file its runtime loads."""

    root: Path
    manifest: ModelManifest
    model_path: Path


def load_package(path: Path, *, verify: Verifier | None = None) -> LoadedPackage:
    """Check the package at `path` and read its manifest.

    The layout is checked first (regular files only, nothing escaping the directory, no
    code-executing formats), then `verify(path)` runs, and only then is the manifest parsed.
    """
    root = _package_root(path)
    files = _package_files(root)
    if verify is not None:
        verify(root)
    manifest = _read_manifest(root)
    model_file = manifest.model_file
    if model_file not in files:
        raise PackageError(
            f"{root}: model_file {model_file!r} named in {MANIFEST_NAME} is not in the package"
        )
    _check_format(root, manifest)
    return LoadedPackage(root=root, manifest=manifest, model_path=root / model_file)


def _package_root(path: Path) -> Path:
    if path.is_symlink():
        raise PackageError(f"{path}: a package directory cannot be a symlink; copy it instead")
    if not path.is_dir():
        raise PackageError(f"{path}: not a directory; a model package is a directory")
    return path.resolve()


def _package_files(root: Path) -> set[str]:
    """Relative paths of the package's files; refuses symlinks, devices and code formats."""
    files: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise PackageError(f"{root}: {rel} is a symlink; packages hold regular files only")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise PackageError(f"{root}: {rel} is not a regular file")
            if name.lower().endswith(CODE_EXECUTING_SUFFIXES):
                raise UntrustedModel(
                    f"{root}: {rel} is a code-executing format (pickle and kin); it is refused, "
                    "signed or not: convert the model to ONNX or skops (`edgeloop models package`)"
                )
            files.add(rel)
            if len(files) > MAX_PACKAGE_FILES:
                raise PackageError(f"{root}: more than {MAX_PACKAGE_FILES} files")
    if MANIFEST_NAME not in files:
        raise PackageError(f"{root}: no {MANIFEST_NAME}; is this a model package directory?")
    return files


def _read_manifest(root: Path) -> ModelManifest:
    path = root / MANIFEST_NAME
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise PackageError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        return ModelManifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise PackageError(f"{path}: invalid manifest at {where}: {first['msg']}") from None


def _check_format(root: Path, manifest: ModelManifest) -> None:
    expected = RUNTIME_FORMATS.get(manifest.runtime)
    if manifest.format != expected:
        raise PackageError(
            f"{root}: runtime {manifest.runtime} serves format {expected}, "
            f"but the manifest says {manifest.format}"
        )
    suffix = FORMAT_SUFFIXES[manifest.format]
    if not manifest.model_file.endswith(suffix):
        raise PackageError(f"{root}: a {manifest.format} model file must end in {suffix}")
    with open(root / manifest.model_file, "rb") as handle:
        head = handle.read(2)
    if head in PICKLE_MAGIC:
        raise UntrustedModel(f"{root}: {manifest.model_file} is a pickle stream; it is refused")

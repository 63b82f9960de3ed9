"""RELIABILITY row 13 for the file store: symlinks inside the root cannot reach outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.errors import InvalidKeyError, ObjectNotFound
from edgeloop.store import LocalStore


@pytest.fixture
def layout(tmp_path: Path) -> tuple[LocalStore, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"do not read")
    store = LocalStore(tmp_path / "root")
    return store, outside


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_symlinked_directory_cannot_be_used_to_read_or_write_outside(
    layout: tuple[LocalStore, Path],
) -> None:
    store, outside = layout
    (store.root / "escape").symlink_to(outside, target_is_directory=True)
    before = _files(outside)
    with pytest.raises(InvalidKeyError, match="outside the store root"):
        store.put("escape/planted.txt", b"x")
    with pytest.raises(InvalidKeyError, match="outside the store root"):
        store.get("escape/secret.txt")
    with pytest.raises(InvalidKeyError, match="outside the store root"):
        store.head("escape/secret.txt")
    with pytest.raises(InvalidKeyError, match="outside the store root"):
        store.delete("escape/secret.txt")
    assert [i.key for i in store.list()] == []
    assert [i.key for i in store.list("escape/")] == []
    assert _files(outside) == before


def test_symlinked_nested_directory_is_refused_too(layout: tuple[LocalStore, Path]) -> None:
    store, outside = layout
    store.put("a/b/real.txt", b"inside")
    (store.root / "a" / "b" / "c").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKeyError):
        store.put("a/b/c/d/x.txt", b"x")
    assert not (outside / "d").exists()
    assert [i.key for i in store.list("a/")] == ["a/b/real.txt"]


def test_symlinked_file_is_never_followed(layout: tuple[LocalStore, Path]) -> None:
    store, outside = layout
    (store.root / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(InvalidKeyError, match="symlink"):
        store.get("link.txt")
    with pytest.raises(InvalidKeyError, match="symlink"):
        store.head("link.txt")
    assert [i.key for i in store.list()] == []
    # Writing replaces the link itself (rename does not follow it); the target is untouched.
    store.put("link.txt", b"new object")
    assert store.get("link.txt").read() == b"new object"
    assert (outside / "secret.txt").read_bytes() == b"do not read"


def test_symlinked_root_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    store = LocalStore(tmp_path / "alias")
    store.put("a/b", b"x")
    assert (real / "a" / "b").read_bytes() == b"x"
    assert [i.key for i in store.list()] == ["a/b"]


def test_prefix_is_not_an_object(layout: tuple[LocalStore, Path]) -> None:
    store, _ = layout
    store.put("dir/obj", b"x")
    with pytest.raises(ObjectNotFound):
        store.get("dir")
    with pytest.raises(ObjectNotFound):
        store.head("dir")

"""Key validation properties: no accepted key leaves a root; every traversal form is refused."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.errors import InvalidKeyError
from edgeloop.store import LocalStore, open_store, validate_key, validate_prefix
from edgeloop.store.url import parse_store_url

ROOT = "/srv/store"

# Segments that look harmless, including dots inside names (allowed) and unicode.
safe_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\%\x00:"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and not s.startswith(".edgeloop"))
safe_key = st.lists(safe_segment, min_size=1, max_size=5).map("/".join)

# Every spelling of a dot-dot segment a decoder somewhere might turn into "..".
TRAVERSAL_SEGMENTS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "%252e%252e",
    "%25252e%25252e",
    "%2e",
    "\uff0e\uff0e",  # fullwidth dots: NFKC turns them into ".."
]


def _resolve(root: str, key: str) -> str:
    return posixpath.normpath(posixpath.join(root, key))


def _fully_unquoted(key: str) -> str:
    for _ in range(6):
        key = unquote(key)
    return key


@given(st.text(max_size=40))
@settings(max_examples=400)
def test_any_accepted_key_stays_inside_the_root(key: str) -> None:
    try:
        validate_key(key)
    except InvalidKeyError as exc:
        assert repr(key)[:40] in str(exc) or "..." in str(exc)
        return
    for candidate in (key, _fully_unquoted(key)):
        resolved = _resolve(ROOT, candidate)
        assert resolved.startswith(ROOT + "/"), (key, resolved)
        assert ".." not in candidate.split("/")
        assert "\\" not in candidate
        assert not re.search(r"[\x00-\x1f\x7f]", candidate)


@given(safe_key)
def test_safe_keys_are_accepted_unchanged(key: str) -> None:
    assert validate_key(key) == key
    assert validate_prefix(key + "/") == key + "/"


@given(
    st.lists(safe_segment, max_size=3),
    st.sampled_from(TRAVERSAL_SEGMENTS),
    st.lists(safe_segment, max_size=3),
)
def test_traversal_segments_are_refused_anywhere(
    before: list[str], bad: str, after: list[str]
) -> None:
    key = "/".join([*before, bad, *after])
    with pytest.raises(InvalidKeyError, match=re.escape(repr(key)[:30])):
        validate_key(key)


@given(safe_key, st.sampled_from(["/", "//", "C:\\", "c:/", "\\\\server\\share\\", "%2f", "%5c"]))
def test_absolute_and_drive_paths_are_refused(key: str, lead: str) -> None:
    with pytest.raises(InvalidKeyError, match="refused object key"):
        validate_key(lead + key)


@given(
    safe_key,
    st.integers(min_value=0, max_value=40),
    st.sampled_from(["\\", "\x00", "\n", "\r", "\x1b", "\x7f", "%00", "%5c", "%5C", "%250a"]),
)
def test_backslash_nul_and_control_characters_are_refused(key: str, where: int, bad: str) -> None:
    at = min(where, len(key))
    with pytest.raises(InvalidKeyError, match="refused object key"):
        validate_key(key[:at] + bad + key[at:])


@given(safe_key, st.sampled_from(["file://", "s3://bucket/", "http://h/", "file:%2f%2f"]))
def test_urls_are_not_keys(key: str, scheme: str) -> None:
    with pytest.raises(InvalidKeyError, match="refused object key"):
        validate_key(scheme + key)


@given(st.sampled_from(TRAVERSAL_SEGMENTS))
def test_traversal_is_refused_in_prefixes(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_prefix(f"a/{bad}/")


@given(safe_key)
def test_percent_encoded_safe_keys_stay_inside(key: str) -> None:
    encoded = quote(key, safe="/")
    try:
        validate_key(encoded)
    except InvalidKeyError:
        return  # refusing is always safe
    assert _resolve(ROOT, _fully_unquoted(encoded)).startswith(ROOT + "/")


@pytest.mark.parametrize(
    "url",
    [
        "file:///data/../etc",
        "s3://bucket/../x",
        "s3://bucket/%2e%2e/x",
        "ftp://host/x",
        "file://remote-host/x",
        "memory://x\x00y",
        "",
        "s3://",
    ],
)
def test_unsafe_store_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidKeyError, match="refused"):
        parse_store_url(url)


def test_file_urls_can_be_disallowed() -> None:
    with pytest.raises(InvalidKeyError, match="not allowed here"):
        parse_store_url("file:///etc", allowed=("s3",))


@given(st.text(max_size=30))
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_local_store_writes_nothing_outside_its_root(tmp_path: Path, key: str) -> None:
    root = tmp_path / "root"
    store = LocalStore(root, fsync=False)
    before = set(tmp_path.rglob("*"))
    try:
        store.put(key, b"x")
    except InvalidKeyError:
        pass
    except OSError:
        pass  # e.g. a name too long for the file system: refused by the OS, not written
    else:
        assert store.get(key).read() == b"x"
        store.delete(key)
    outside = {p for p in tmp_path.rglob("*") if root not in p.parents and p != root}
    assert outside <= before


@pytest.mark.parametrize(
    ("query", "fsync", "syncfs"),
    [("", True, True), ("?fsync=0", False, True), ("?syncfs=no", True, False),
     ("?fsync=off&syncfs=1", False, True), ("?fsync=TRUE", True, True)],
)  # fmt: skip
def test_file_url_options_turn_fsync_and_syncfs_on_and_off(
    tmp_path: Path, query: str, fsync: bool, syncfs: bool
) -> None:
    store = open_store(f"file://{tmp_path}/s{query}")
    assert isinstance(store, LocalStore) and (store.fsync, store.syncfs) == (fsync, syncfs)


@pytest.mark.parametrize(
    ("query", "message"),
    [("?fsnyc=0", r"unknown option\(s\) fsnyc; a file:// store knows fsync, syncfs"),
     ("?fsync=maybe", r"fsync='maybe' is not on or off; write fsync=1 or fsync=0")],
)  # fmt: skip
def test_unknown_or_unclear_file_url_options_are_refused(
    tmp_path: Path, query: str, message: str
) -> None:
    with pytest.raises(InvalidKeyError, match=message):
        open_store(f"file://{tmp_path}/s{query}")
    assert not (tmp_path / "s").exists()

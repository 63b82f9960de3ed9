"""Object key validation, in one place: every store calls `validate_key` before any I/O."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from edgeloop.errors import InvalidKeyError

MAX_KEY_BYTES = 1024
# Names under this prefix hold a store's own bookkeeping (temp files); users may not write there.
RESERVED_PREFIX = ".edgeloop"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _refuse(key: str, why: str) -> InvalidKeyError:
    return InvalidKeyError(f"refused object key {key!r}: {why}")


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise InvalidKeyError naming it.

    Refused: empty keys, absolute paths, `.`/`..` segments (also percent-encoded), backslashes,
    NUL and control characters, empty segments, drive letters, reserved names, over-long keys.
    """
    if not isinstance(key, str) or not key:
        raise _refuse(str(key), "keys must be non-empty strings")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise _refuse(key[:64] + "...", f"longer than {MAX_KEY_BYTES} bytes")
    # Decode repeatedly so %252e%252e cannot sneak a traversal through a later decoder.
    decoded, previous = key, None
    for _ in range(4):
        if decoded == previous:
            break
        previous, decoded = decoded, unquote(decoded)
    for candidate in {key, decoded, unicodedata.normalize("NFKC", decoded)}:
        _check_plain(key, candidate)
    return key


def _check_plain(original: str, key: str) -> None:
    if _CONTROL.search(key):
        raise _refuse(original, "contains NUL or control characters")
    if "\\" in key:
        raise _refuse(original, "contains a backslash; use '/' to separate parts")
    if key.startswith("/") or _DRIVE.match(key):
        raise _refuse(original, "absolute paths are not allowed; use a relative key like 'a/b.txt'")
    if "://" in key:
        raise _refuse(original, "looks like a URL; give a key inside the store, not a URL")
    parts = key.split("/")
    for part in parts:
        if part in (".", ".."):
            raise _refuse(original, "'.' and '..' segments are not allowed (path traversal)")
        if part == "" and part is not parts[-1]:
            raise _refuse(original, "empty path segment ('//')")
    if parts[-1] == "":
        raise _refuse(original, "keys must not end with '/'")
    if parts[0].startswith(RESERVED_PREFIX):
        raise _refuse(original, f"names starting with {RESERVED_PREFIX!r} are reserved")


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is '' or a safe key prefix (a trailing '/' is allowed)."""
    if prefix == "":
        return prefix
    body = prefix[:-1] if prefix.endswith("/") else prefix
    if not body:
        raise _refuse(prefix, "a prefix of only '/' is not allowed; use '' for everything")
    validate_key(body)
    return prefix

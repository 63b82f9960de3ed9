"""Parse and check store URLs (`file://`, `s3://`, `memory://`) before anything is opened."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from edgeloop.errors import InvalidKeyError
from edgeloop.store.keys import validate_prefix

SCHEMES = ("file", "s3", "memory")


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL: scheme, location (path, bucket or name), key prefix and options."""

    scheme: str
    location: str
    prefix: str = ""
    options: dict[str, str] = field(default_factory=dict)
    raw: str = ""


def parse_store_url(
    url: str, *, allowed: tuple[str, ...] = SCHEMES, base_dir: Path | None = None
) -> StoreURL:
    """Parse `url`; a bare path means `file://`, relative to `base_dir` (default: cwd).

    Raises InvalidKeyError for unknown or disallowed schemes, NUL/control characters, and
    traversal in the bucket prefix.
    """
    if not url or any(ord(c) < 32 for c in url):
        raise InvalidKeyError(f"refused store URL {url!r}: empty or has control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):
        scheme = "file"
        path = Path(url)
        location = str((base_dir or Path.cwd()) / path if not path.is_absolute() else path)
        return _checked(StoreURL("file", location, raw=url), allowed)
    if scheme not in SCHEMES:
        raise InvalidKeyError(
            f"refused store URL {url!r}: unknown scheme {scheme!r}; use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidKeyError(
                f"refused store URL {url!r}: file:// URLs take an absolute path "
                "(file:///data/store), not a host"
            )
        raw_path = unquote(parts.path)
        if not raw_path:
            raise InvalidKeyError(f"refused store URL {url!r}: no directory given")
        location = str(
            Path(raw_path) if Path(raw_path).is_absolute() else (base_dir or Path.cwd()) / raw_path
        )
        return _checked(StoreURL("file", location, options=options, raw=url), allowed)
    if scheme == "memory":
        return _checked(
            StoreURL("memory", parts.netloc + parts.path, options=options, raw=url), allowed
        )
    bucket = parts.netloc
    if not bucket:
        raise InvalidKeyError(
            f"refused store URL {url!r}: s3:// URLs need a bucket (s3://bucket/prefix)"
        )
    prefix = parts.path.lstrip("/")
    if prefix:
        validate_prefix(prefix if prefix.endswith("/") else prefix + "/")
        prefix = prefix.rstrip("/") + "/"
    return _checked(StoreURL("s3", bucket, prefix=prefix, options=options, raw=url), allowed)


def _checked(parsed: StoreURL, allowed: tuple[str, ...]) -> StoreURL:
    if parsed.scheme not in allowed:
        raise InvalidKeyError(
            f"refused store URL {parsed.raw!r}: {parsed.scheme}:// is not allowed here; "
            f"allowed: {', '.join(allowed)}"
        )
    if parsed.scheme == "file" and ".." in Path(parsed.location).parts:
        raise InvalidKeyError(f"refused store URL {parsed.raw!r}: '..' is not allowed in a path")
    return parsed

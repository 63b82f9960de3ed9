"""`s3://bucket/prefix` store for any S3-compatible endpoint, through obstore."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlencode

import obstore
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store as _ObstoreS3

from edgeloop.errors import InvalidKeyError, ObjectNotFound, StoreError, StoreUnavailable
from edgeloop.model.events import utcnow
from edgeloop.settings import on_off
from edgeloop.store.base import CHUNK_SIZE, HashingReader, ObjectInfo, PutData, iter_chunks
from edgeloop.store.keys import validate_key, validate_prefix
from edgeloop.store.url import StoreURL

if TYPE_CHECKING:
    from obstore import GetResult, ObjectMeta

# User metadata field that carries the SHA-256 (sent as x-amz-meta-sha256).
SHA_ATTRIBUTE = "sha256"
# Objects up to this size go up in one PUT (one round trip); larger ones as multipart.
SINGLE_PUT_MAX = 8 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
PART_CONCURRENCY = 4

# URL query options and the standard environment variables they fall back to, in order.
_ENV_FALLBACKS: dict[str, tuple[str, ...]] = {
    "endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
}
_TUNING_OPTIONS = frozenset(
    {"allow_http", "virtual_hosted_style", "max_retries", "connect_timeout", "timeout"}
)
KNOWN_OPTIONS = frozenset(_ENV_FALLBACKS) | _TUNING_OPTIONS

# Parts of obstore's first message line that mean "the store could not be reached" (retryable).
_TRANSPORT_MARKERS = (
    "error sending request",
    "http error",
    "timed out",
    "connection",
    "error decoding response body",
    "dns error",
)
_RETRYABLE_STATUS = re.compile(r"status code: (5\d\d|429)\b")


def is_unavailable(first_line: str) -> bool:
    """Whether an obstore error line describes an outage (network, timeout, 5xx, throttling)
    rather than a request the store refused."""
    text = re.sub(r"retry_timeout: \S+", "", first_line.lower())  # in every retried error
    return bool(_RETRYABLE_STATUS.search(text)) or any(m in text for m in _TRANSPORT_MARKERS)


def _flag(value: str) -> bool:
    return on_off(value) is True


def _first_line(exc: BaseException) -> str:
    text = str(exc).split("Debug source:", 1)[0].strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


class S3Store:
    """An ObjectStore over one bucket (and optional key prefix) of an S3-compatible endpoint.

    Each object's SHA-256 is stored as user metadata (`x-amz-meta-sha256`) and returned by
    `get` and `head`; S3 listings carry no metadata, so `list` reports `sha256=None`.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        allow_http: bool | None = None,
        virtual_hosted_style: bool = False,
        max_retries: int = 3,
        connect_timeout: float = 5.0,
        timeout: float = 3600.0,
    ) -> None:
        if prefix:
            validate_prefix(prefix)
            prefix = prefix.rstrip("/") + "/"
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        if allow_http is None:
            allow_http = bool(endpoint and endpoint.lower().startswith("http://"))
        public = {k: v for k, v in (("endpoint", endpoint), ("region", region)) if v}
        query = "?" + urlencode(public, safe=":/") if public else ""
        # Never credentials: this URL shows up in logs, events and error messages.
        self.url = f"s3://{bucket}/{prefix}{query}"
        config: dict[str, Any] = {"virtual_hosted_style_request": virtual_hosted_style}
        for name, value in (
            ("endpoint", endpoint),
            ("region", region),
            ("access_key_id", access_key_id),
            ("secret_access_key", secret_access_key),
            ("session_token", session_token),
        ):
            if value:
                config[name] = value
        try:
            self._store = _ObstoreS3(
                bucket,
                prefix=prefix.rstrip("/") or None,
                config=config,  # type: ignore[arg-type]
                client_options={
                    "allow_http": allow_http,
                    "connect_timeout": timedelta(seconds=connect_timeout),
                    # A whole-request limit: big objects stream for a while, stalls still end.
                    "timeout": timedelta(seconds=timeout),
                },
                retry_config={
                    "max_retries": max_retries,
                    "retry_timeout": timedelta(seconds=max(30.0, connect_timeout * 4)),
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=5),
                        "base": 2,
                    },
                },
            )
        except Exception as exc:  # obstore raises several config error types
            raise StoreError(
                f"{self.url}: cannot configure the S3 client: {_first_line(exc)}"
            ) from exc

    @classmethod
    def from_url(cls, url: StoreURL, env: dict[str, str] | None = None) -> S3Store:
        """Build from a parsed `s3://bucket/prefix?endpoint=...` URL; missing endpoint, region
        and credentials fall back to the standard AWS_* environment variables."""
        environ = os.environ if env is None else env
        unknown = sorted(set(url.options) - KNOWN_OPTIONS)
        if unknown:
            raise InvalidKeyError(
                f"refused store URL s3://{url.location}/{url.prefix}: unknown option(s) "
                f"{', '.join(unknown)}; known: {', '.join(sorted(KNOWN_OPTIONS))}"
            )
        values: dict[str, str | None] = {}
        for name, env_names in _ENV_FALLBACKS.items():
            value = url.options.get(name) or next(
                (environ[e] for e in env_names if environ.get(e)), None
            )
            values[name] = value
        opts = url.options
        allow_http = opts.get("allow_http") or environ.get("AWS_ALLOW_HTTP")
        try:
            return cls(
                url.location,
                prefix=url.prefix,
                endpoint=values["endpoint"],
                region=values["region"] or "us-east-1",
                access_key_id=values["access_key_id"],
                secret_access_key=values["secret_access_key"],
                session_token=values["session_token"],
                allow_http=_flag(allow_http) if allow_http else None,
                virtual_hosted_style=_flag(opts.get("virtual_hosted_style", "0")),
                max_retries=int(opts.get("max_retries", "3")),
                connect_timeout=float(opts.get("connect_timeout", "5")),
                timeout=float(opts.get("timeout", "3600")),
            )
        except ValueError as exc:
            if isinstance(exc, InvalidKeyError):
                raise
            raise InvalidKeyError(
                f"refused store URL s3://{url.location}/{url.prefix}: max_retries, "
                "connect_timeout and timeout take numbers (seconds)"
            ) from exc

    # -- errors ----------------------------------------------------------------------------
    def _error(self, exc: BaseException, key: str, action: str) -> StoreError:
        """Translate an obstore error into the edgeloop error a caller can act on."""
        message = _first_line(exc)
        where = f"{self.url}: {action} {key!r}"
        if "<code>nosuchbucket</code>" in str(exc).lower():
            return StoreError(
                f"{where}: bucket {self.bucket!r} does not exist; create it first "
                "(e.g. `rclone mkdir` or your provider's console)"
            )
        if isinstance(exc, FileNotFoundError):
            return ObjectNotFound(f"{self.url}: no object at key {key!r}")
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or " 403 " in message:
            return StoreError(
                f"{where}: access denied; check access_key_id/secret_access_key in the URL "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            )
        if is_unavailable(message):
            return StoreUnavailable(
                f"{where}: store unreachable ({message}); check the endpoint and network, "
                "the operation can be retried"
            )
        return StoreError(f"{where}: {message}")

    # -- interface -------------------------------------------------------------------------
    def put(self, key: str, data: PutData, *, expected_sha256: str | None = None) -> ObjectInfo:
        """Upload `data` to `key`; with `expected_sha256`, bytes that hash otherwise are never
        made visible (the single PUT is not sent, or the multipart upload is aborted)."""
        validate_key(key)
        if isinstance(data, bytes | bytearray | memoryview):
            return self._put_buffered(key, data, expected_sha256)
        if expected_sha256 is None and _seekable(data):
            # A local file: hash it in a first pass, then stream it checked against that
            # digest (which also catches a file that changes while it uploads).
            file = cast("BinaryIO", data)
            start = file.tell()
            first_pass = HashingReader(iter_chunks(file))
            for _ in first_pass:
                pass
            file.seek(start)
            expected_sha256 = first_pass.sha256
        chunks = iter_chunks(data)
        head: list[bytes] = []
        size = 0
        for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if size > SINGLE_PUT_MAX:
                break
        else:
            return self._put_buffered(key, b"".join(head), expected_sha256)
        rest = _chain(head, chunks)
        if expected_sha256 is not None:
            return self._put_streaming(key, rest, expected_sha256)
        # The digest must be in the metadata before the upload starts: spool and hash first.
        with tempfile.TemporaryFile(prefix="edgeloop-s3-") as spool:
            hashing = HashingReader(rest)
            for chunk in hashing:
                spool.write(chunk)
            spool.seek(0)
            return self._put_streaming(key, iter_chunks(spool), hashing.sha256)

    def _put_buffered(
        self, key: str, data: bytes | bytearray | memoryview, expected: str | None
    ) -> ObjectInfo:
        hashing = HashingReader([bytes(data)] if not isinstance(data, bytes) else [data])
        body = b"".join(hashing)
        digest = hashing.check(key, expected)  # before any byte leaves: nothing to undo
        try:
            result = obstore.put(
                self._store,
                key,
                body,
                attributes={SHA_ATTRIBUTE: digest},
                use_multipart=len(body) > SINGLE_PUT_MAX,
                chunk_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
        except Exception as exc:
            raise self._error(exc, key, "cannot write") from exc
        return ObjectInfo(key, len(body), utcnow(), digest, result.get("e_tag"))

    def _put_streaming(self, key: str, chunks: Iterable[bytes], expected: str) -> ObjectInfo:
        hashing = HashingReader(chunks)

        def verified() -> Iterator[bytes]:
            yield from hashing
            # Raising here, before the last part is handed over, makes obstore abort the
            # multipart upload, so a mismatching object never becomes visible.
            hashing.check(key, expected)

        try:
            result = obstore.put(
                self._store,
                key,
                verified(),
                attributes={SHA_ATTRIBUTE: expected.lower()},
                use_multipart=True,
                chunk_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, key, "cannot write") from exc
        return ObjectInfo(key, hashing.size, utcnow(), hashing.sha256, result.get("e_tag"))

    def get(self, key: str) -> S3Reader:
        validate_key(key)
        try:
            result = obstore.get(self._store, key)
        except Exception as exc:
            raise self._error(exc, key, "cannot read") from exc
        return S3Reader(self._info(key, result.meta, result.attributes), result, self, key)

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        try:
            # A GET with head=True is one HEAD request that also returns the user metadata.
            result = obstore.get(self._store, key, options={"head": True})
        except Exception as exc:
            raise self._error(exc, key, "cannot read") from exc
        return self._info(key, result.meta, result.attributes)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # obstore lists by path segments; list the deepest whole directory of the prefix and
        # filter the rest here, starting natively (S3 start-after) as late as is safe.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        offset = _native_offset(prefix, start_after)
        try:
            stream = obstore.list(self._store, directory, offset=offset, chunk_size=1000)
            for batch in stream:
                for meta in batch:
                    key = meta["path"]
                    if start_after is not None and key <= start_after:
                        continue
                    if not key.startswith(prefix):
                        if key > prefix:
                            return  # lexicographic order: nothing later can match
                        continue
                    yield self._info(key, meta, None)
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, prefix, "cannot list prefix") from exc

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            obstore.delete(self._store, key)  # S3 DELETE of a missing key succeeds
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error(exc, key, "cannot delete") from exc

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    @staticmethod
    def _info(key: str, meta: ObjectMeta, attributes: dict[str, str] | None) -> ObjectInfo:
        sha = (attributes or {}).get(SHA_ATTRIBUTE)
        return ObjectInfo(
            key=key,
            size=meta["size"],
            modified=meta["last_modified"],
            sha256=sha.lower() if sha else None,
            etag=meta.get("e_tag"),
        )


def _seekable(data: object) -> bool:
    try:
        return bool(data.seekable())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from head
    yield from rest


def _native_offset(prefix: str, start_after: str | None) -> str | None:
    """The S3 start-after to send: never past the first wanted key, so filtering stays exact.

    obstore turns the offset into a path (dropping a trailing '/', refusing odd segments), so
    only values that are valid keys are sent; anything else falls back to the prefix bound.
    """
    candidates = []
    if start_after:
        candidates.append(start_after)
    if prefix and not prefix.endswith("/"):
        # The largest simple string below the prefix: keys from the prefix on sort after it.
        before = prefix[:-1] + chr(ord(prefix[-1]) - 1)
        candidates.append(before)
    usable = []
    for candidate in candidates:
        try:
            validate_key(candidate)
        except InvalidKeyError:
            continue
        usable.append(candidate)
    return max(usable) if usable else None


class S3Reader:
    """A streaming read of one S3 object (chunks of about 1 MiB as they arrive)."""

    def __init__(self, info: ObjectInfo, result: GetResult, store: S3Store, key: str) -> None:
        self.info = info
        self._result = result
        self._store = store
        self._key = key

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result.stream(min_chunk_size=CHUNK_SIZE)
        except Exception as exc:
            raise self._store._error(exc, self._key, "cannot read") from exc

    def read(self) -> bytes:
        try:
            return bytes(self._result.bytes())
        except Exception as exc:
            raise self._store._error(exc, self._key, "cannot read") from exc

    def close(self) -> None:
        self._result = None  # type: ignore[assignment]  # drops the HTTP body

    def __enter__(self) -> S3Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

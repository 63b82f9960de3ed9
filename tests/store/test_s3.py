"""What only the S3 store does: configuration from URL and environment, redaction, errors."""

from __future__ import annotations

import io
import os

import pytest

from edgeloop.errors import InvalidKeyError, ObjectNotFound, StoreError, StoreUnavailable
from edgeloop.store import open_store, parse_store_url, sha256_bytes
from edgeloop.store.s3 import SINGLE_PUT_MAX, S3Store, _native_offset, is_unavailable
from edgeloop.testing.s3server import S3Server, free_port


def test_url_and_errors_never_show_credentials(s3_server: S3Server) -> None:
    store = open_store(s3_server.url("redact"))
    assert s3_server.secret_key not in store.url
    assert s3_server.access_key not in store.url
    assert s3_server.secret_key not in repr(store)
    assert store.url.startswith("s3://redact/?endpoint=http://127.0.0.1:")
    with pytest.raises(ObjectNotFound) as caught:
        store.get("missing")
    assert s3_server.secret_key not in str(caught.value)


def test_credentials_fall_back_to_standard_aws_variables(s3_server: S3Server) -> None:
    s3_server.url("fromenv")  # makes the bucket
    env = {
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": "us-east-1",
    }
    store = S3Store.from_url(parse_store_url("s3://fromenv/p"), env=env)
    store.put("k", b"v")
    assert store.get("k").read() == b"v"
    # The public URL (endpoint, region, no secrets) reopens the same objects with env creds.
    again = S3Store.from_url(parse_store_url(store.url), env=env)
    assert again.head("k").sha256 == sha256_bytes(b"v")


def test_url_options_win_over_environment(s3_server: S3Server) -> None:
    env = {"AWS_ACCESS_KEY_ID": "wrong", "AWS_SECRET_ACCESS_KEY": "wrong"}
    store = S3Store.from_url(parse_store_url(s3_server.url("urlwins")), env=env)
    store.put("k", b"v")
    assert store.head("k").size == 1


def test_wrong_credentials_say_access_denied_without_the_secret(s3_server: S3Server) -> None:
    url = s3_server.url("denied").replace(s3_server.secret_key, "not-the-secret")
    store = open_store(url)
    with pytest.raises(StoreError, match="access denied") as caught:
        store.put("k", b"v")
    assert "not-the-secret" not in str(caught.value)


def test_unreachable_endpoint_is_store_unavailable() -> None:
    url = (
        f"s3://b?endpoint=http://127.0.0.1:{free_port()}&access_key_id=a&secret_access_key=b"
        "&max_retries=0&connect_timeout=1"
    )
    store = open_store(url)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.head("k")
    with pytest.raises(StoreUnavailable):
        list(store.list())


def test_missing_bucket_says_so(s3_server: S3Server) -> None:
    url = s3_server.url("exists").replace("s3://exists", "s3://no-such-bucket")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(url).put("k", b"v")


def test_unknown_and_malformed_options_are_refused(s3_server: S3Server) -> None:
    with pytest.raises(InvalidKeyError, match="unknown option"):
        open_store(s3_server.url("opts") + "&acess_key=typo")
    with pytest.raises(InvalidKeyError, match="numbers"):
        open_store(s3_server.url("opts") + "&timeout=soon")


@pytest.mark.parametrize(
    "url", ["s3://", "s3:///prefix", "s3://b/../x", "s3://b/%2e%2e/x", "s3://b/a\\b"]
)
def test_malformed_s3_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidKeyError, match="refused"):
        open_store(url)


def test_prefix_in_url_is_transparent(s3_server: S3Server) -> None:
    outer = open_store(s3_server.url("pfx"))
    inner = open_store(s3_server.url("pfx", "site/a"))
    inner.put("x/y", b"1")
    assert [i.key for i in inner.list()] == ["x/y"]
    assert [i.key for i in outer.list()] == ["site/a/x/y"]
    assert outer.head("site/a/x/y").sha256 == sha256_bytes(b"1")


def test_list_reports_no_sha256_but_head_does(s3_server: S3Server) -> None:
    store = open_store(s3_server.url("listsha"))
    store.put("k", b"v")
    (listed,) = store.list()
    assert listed.sha256 is None  # S3 listings carry no user metadata
    assert store.head("k").sha256 == sha256_bytes(b"v")


@pytest.mark.parametrize(
    ("prefix", "start_after", "expected"),
    [
        ("", None, None),
        ("captures/", None, None),
        ("captures/", "captures/m/2", "captures/m/2"),
        ("captures/m", None, "captures/l"),
        ("captures/m", "captures/m/9", "captures/m/9"),
        ("captures/m", "a", "captures/l"),
        ("", "a/", None),  # not a key: obstore would trim it to 'a', so nothing is sent
        ("a/0", None, None),  # '0' - 1 is '/', which would make an empty segment
    ],
)
def test_native_start_after_never_skips_a_wanted_key(
    prefix: str, start_after: str | None, expected: str | None
) -> None:
    assert _native_offset(prefix, start_after) == expected


@pytest.mark.parametrize(
    ("line", "outage"),
    [
        (
            "Generic S3 error: Error performing HEAD http://h/b/x in 52ms, after 1 retries, "
            "max_retries: 1, retry_timeout: 2s  - HTTP error: error sending request",
            True,
        ),
        (
            "Generic S3 error: Error performing PUT http://h/b/k in 4s, after 3 retries, "
            "max_retries: 3, retry_timeout: 30s  - Server returned non-2xx status code: "
            "503 Service Unavailable: ",
            True,
        ),
        (
            "Generic S3 error: ... - Server returned non-2xx status code: 429 Too Many Requests",
            True,
        ),
        ("Generic HTTP error: error decoding response body", True),
        (
            "Generic S3 error: Error performing PUT http://h/b/k in 1ms, after 3 retries, "
            "max_retries: 3, retry_timeout: 30s - Server returned non-2xx status code: "
            "400 Bad Request: <Error><Code>InvalidArgument</Code></Error>",
            False,
        ),
        (
            "Generic S3 error: Error performing PUT http://h/b/timeout-key in 1ms - Server "
            "returned non-2xx status code: 409 Conflict",
            False,
        ),
    ],
)
def test_only_outages_are_retryable(line: str, outage: bool) -> None:
    assert is_unavailable(line) is outage


def test_large_seekable_file_is_hashed_then_streamed(s3_server: S3Server) -> None:
    store = open_store(s3_server.url("seekable"))
    data = os.urandom(SINGLE_PUT_MAX + 1024 * 1024)
    handle = io.BytesIO(b"skipped header" + data)
    handle.seek(len(b"skipped header"))  # uploads from the current position, as files do
    info = store.put("file/big", handle)
    assert (info.size, info.sha256) == (len(data), sha256_bytes(data))
    assert store.head("file/big").sha256 == sha256_bytes(data)
    assert store.get("file/big").read() == data

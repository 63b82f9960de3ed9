"""The agent's side of the local inference server: its admin API (status, load, unload), its
metrics, and, when the agent owns it, the `edgeloop serve` child process."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from edgeloop.errors import ServingError

log = logging.getLogger(__name__)

_ENTRY = "from edgeloop.cli.main import run; run()"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class ServerUnreachable(ServingError):
    """The local inference server did not answer."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments and malformed lines are skipped)."""
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(4))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(match.group(3) or ""))
        out.append(Sample(match.group(1), labels, value))
    return out


def total(samples: Sequence[Sample], name: str, **where: Any) -> float:
    """Sum of the samples named `name` whose labels match `where` (a callable or a value)."""
    result = 0.0
    for s in samples:
        if s.name != name:
            continue
        if all(
            (cond(s.labels.get(k)) if callable(cond) else s.labels.get(k) == cond)
            for k, cond in where.items()
        ):
            result += s.value
    return result


def is_error_status(status: str | None) -> bool:
    """Requests that count against a model: server errors and malformed-for-this-model (400)."""
    return status is not None and (status == "400" or status.startswith("5"))


class ServingLink:
    """The inference server's admin API, with its bearer token."""

    def __init__(self, url: str, token: str, *, http: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = http or httpx.Client(timeout=httpx.Timeout(10.0, read=300.0))

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            return self.http.request(method, f"{self.url}{path}", headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(
                f"inference server at {self.url} did not answer: {type(exc).__name__}"
            ) from None

    def live(self) -> bool:
        try:
            return self._call("GET", "/v2/health/live").status_code == 200
        except ServerUnreachable:
            return False

    def ready(self) -> bool:
        try:
            return self._call("GET", "/v2/health/ready").status_code == 200
        except ServerUnreachable:
            return False

    def status(self) -> dict[str, Any]:
        response = self._call("GET", "/v2/status")
        if response.status_code != 200:
            raise ServingError(f"/v2/status answered {response.status_code}: {response.text}")
        return dict(response.json())

    def loaded(self) -> dict[str, str]:
        """Model -> version being served (models unloaded or never loaded are left out)."""
        models = self.status().get("models") or {}
        return {
            name: str(info["active_version"])
            for name, info in models.items()
            if info.get("active_version") is not None
        }

    def load(self, model: str, version: str) -> None:
        """Swap `model` to `version` (pinned); ServingError with the server's reason if not."""
        body = {"parameters": {"version": int(version)}}
        response = self._call("POST", f"/v2/repository/models/{model}/load", json=body)
        if response.status_code != 200:
            raise ServingError(f"{model}:{version} did not load: {_error(response)}")

    def unload(self, model: str) -> None:
        response = self._call("POST", f"/v2/repository/models/{model}/unload")
        if response.status_code not in (200, 400):  # 400: it was not loaded
            raise ServingError(f"{model} did not unload: {_error(response)}")

    def metrics(self) -> list[Sample]:
        try:
            response = self.http.get(f"{self.url}/metrics")
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"no metrics from {self.url}: {type(exc).__name__}") from None
        return parse_metrics(response.text)

    def close(self) -> None:
        self.http.close()


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))[:1000]
    except ValueError:
        return response.text[:1000]


class ServerProcess:
    """An `edgeloop serve` child owned by the agent: started, watched and restarted by it."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._log: IO[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-c", _ENTRY, "serve", *self.args]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - held for the child's life
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        log.info("started the inference server (pid %d): %s", self.process.pid, self.command)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_live(link: ServingLink, timeout: float, process: ServerProcess | None = None) -> bool:
    """Wait for the server to answer /v2/health/live; False on timeout or if the child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if link.live():
            return True
        if process is not None and not process.alive():
            return False
        time.sleep(0.1)
    return False

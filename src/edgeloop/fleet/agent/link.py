"""The agent's HTTP calls to the control plane: join, long-poll desired state, heartbeat, report.

Outbound only. The httpx client is injectable, so a test can drive an in-process app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from edgeloop.errors import FleetError
from edgeloop.fleet.client import ControlPlaneUnreachable
from edgeloop.model.desired import canonical_json
from edgeloop.model.rbac import API


class AgentRefused(FleetError):
    """The control plane refused the agent's token (401/403): join again with a new token."""


@dataclass(frozen=True)
class Joined:
    """The answer to a join: the agent token and the key desired state is signed with."""

    site: str
    token: str
    signing_key: str
    labels: dict[str, str]


@dataclass(frozen=True)
class DesiredAnswer:
    """A long-poll answer: the raw signed envelope (None when unchanged) and its ETag."""

    envelope: bytes | None
    etag: str | None


class ControlLink:
    """Talks to one control plane as one site."""

    def __init__(self, base_url: str, site: str, *, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.site = site
        self.http = http or httpx.Client(timeout=httpx.Timeout(10.0, read=90.0))
        self.token: str | None = None

    def _call(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        secret = token or self.token
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        headers.update(kw.pop("headers", {}))
        try:
            response = self.http.request(
                method, f"{self.base_url}{API}{path}", headers=headers, **kw
            )
        except httpx.HTTPError as exc:
            raise ControlPlaneUnreachable(
                f"cannot reach the control plane at {self.base_url}: {type(exc).__name__}"
            ) from None
        if response.status_code in (401, 403):
            raise AgentRefused(f"control plane refused the agent: {_message(response)}")
        if response.status_code >= 500:
            raise ControlPlaneUnreachable(
                f"control plane answered {response.status_code}: {_message(response)}"
            )
        return response

    def join(self, join_token: str) -> Joined:
        """Trade a one-time join token for this site's agent token."""
        response = self._call("POST", "/join", token=join_token)
        if response.status_code != 201:
            raise FleetError(f"join failed ({response.status_code}): {_message(response)}")
        body = response.json()
        if body.get("site") != self.site:
            raise FleetError(
                f"the join token is for site {body.get('site')!r}, not {self.site!r}; "
                "create one for this site with `edgeloop fleet join-token`"
            )
        return Joined(body["site"], body["token"], body["signing_key"], body.get("labels") or {})

    def desired(self, etag: str | None, wait: float) -> DesiredAnswer:
        """The signed desired state if it differs from `etag` (waits up to `wait` seconds)."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self._call(
            "GET", f"/sites/{self.site}/desired", headers=headers, params={"wait": wait}
        )
        if response.status_code == 304:
            return DesiredAnswer(None, etag)
        if response.status_code == 404:
            return DesiredAnswer(None, None)  # joined, but no deployment selects the site yet
        if response.status_code != 200:
            raise FleetError(f"desired state: {response.status_code}: {_message(response)}")
        body = response.json()
        # The envelope is re-serialized canonically: its fields are plain strings, so the
        # signed payload inside is carried byte for byte.
        return DesiredAnswer(canonical_json(body["envelope"]), body.get("etag"))

    def heartbeat(self, status: dict[str, Any]) -> str | None:
        """Send the site's status; returns the ETag of its current desired state."""
        response = self._call("POST", f"/sites/{self.site}/heartbeat", json=status)
        if response.status_code != 200:
            raise FleetError(f"heartbeat: {response.status_code}: {_message(response)}")
        etag = response.json().get("desired_etag")
        return str(etag) if etag else None

    def report(self, report: dict[str, Any]) -> None:
        response = self._call("POST", f"/sites/{self.site}/reports", json=report)
        if response.status_code >= 400:
            raise FleetError(f"report: {response.status_code}: {_message(response)}")

    def close(self) -> None:
        self.http.close()


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))[:500]
    except ValueError:
        return response.text[:500]

"""A small client of the control-plane API, used by the CLI (and by agents and tests).

The HTTP client is injectable: tests pass Starlette's TestClient (an httpx.Client over the
ASGI app), the CLI a plain httpx.Client.
"""

from __future__ import annotations

from typing import Any

import httpx

from edgeloop.errors import FleetConflict, FleetError, FleetNotFound
from edgeloop.model.rbac import API


class ControlPlaneUnreachable(FleetError):
    """The control plane did not answer; check --control / EDGELOOP_CONTROL_URL."""


class FleetClient:
    """Calls the control plane with a bearer token; API errors become FleetError subclasses."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.Client(timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{API}{path}"
        try:
            response = self.http.request(method, url, headers=self.headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ControlPlaneUnreachable(
                f"cannot reach the control plane at {self.base_url}: {exc}; is `edgeloop core` "
                "running, and is --control right?"
            ) from None
        if response.status_code < 400:
            return response.json() if response.content else None
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        status = response.status_code
        if status == 404:
            raise FleetNotFound(message)
        if status == 409:
            raise FleetConflict(message)
        if status == 401:
            raise FleetError(f"not authenticated: {message}")
        if status == 403:
            raise FleetError(f"not allowed: {message}")
        raise FleetError(f"control plane answered {status}: {message}")

    # convenience wrappers, one per route the CLI uses

    def whoami(self) -> dict[str, Any]:
        return self.request("GET", "/whoami")

    def sites(self, selector: str = "") -> list[dict[str, Any]]:
        return self.request("GET", "/sites", params={"selector": selector})

    def join_token(
        self, site: str, labels: dict[str, str], expires_in: float = 3600.0
    ) -> dict[str, Any]:
        body = {"site": site, "labels": labels, "expires_in": expires_in}
        return self.request("POST", "/join-tokens", json=body)

    def deploy(
        self,
        name: str,
        model: str,
        version: str | None,
        selector: str,
        *,
        alias: str | None = None,
        waves: str | None = None,
        gate: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "version": version, "selector": selector}
        if alias is not None:
            body.update(alias=alias, waves=waves or "5,25,100", gate=gate)
        return self.request("PUT", f"/deployments/{name}", json=body)

    def deployments(self) -> list[dict[str, Any]]:
        return self.request("GET", "/deployments")

    def start_rollout(
        self, deployment: str, version: str, waves: str, gate: dict[str, Any]
    ) -> dict[str, Any]:
        body = {"deployment": deployment, "version": version, "waves": waves, "gate": gate}
        return self.request("POST", "/rollouts", json=body)

    def rollouts(self) -> list[dict[str, Any]]:
        return self.request("GET", "/rollouts")

    def rollout(self, rollout_id: str) -> dict[str, Any]:
        return self.request("GET", f"/rollouts/{rollout_id}")

    def act(self, rollout_id: str, action: str, reason: str = "") -> dict[str, Any]:
        return self.request("POST", f"/rollouts/{rollout_id}/{action}", json={"reason": reason})

    def create_token(self, name: str, role: str, expires_in: float | None) -> dict[str, Any]:
        body = {"name": name, "role": role, "expires_in": expires_in}
        return self.request("POST", "/tokens", json=body)

    def tokens(self) -> list[dict[str, Any]]:
        return self.request("GET", "/tokens")

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/tokens/{token_id}")

    def audit(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        params = {"after": after, "limit": limit}
        return self.request("GET", "/audit", params=params)

    def close(self) -> None:
        self.http.close()

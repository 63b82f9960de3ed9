"""The heartbeat route's fast lane: a well-formed heartbeat from a cached token is answered
from memory, without the framework's routing and dependency machinery.

Heartbeats are the one route every site calls every few seconds, so their cost sets how many
sites a control plane carries. The lane does exactly what the FastAPI route does on its
buffered path (same policy check, same pydantic model, same answer) and hands every request
it cannot finish alone to the full app untouched: an uncached or refused token, a wrong
site, a body that does not validate, a site whose ETag is not in memory. Those get the full
app's answer, error shape and audit record.
"""

from __future__ import annotations

import re

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeloop.fleet.auth import Authenticator
from edgeloop.fleet.control import ControlSettings
from edgeloop.fleet.schemas import HeartbeatIn
from edgeloop.fleet.service import FleetService
from edgeloop.model.rbac import API, allows, policy_for
from edgeloop.workspace.config import NAME_PATTERN

HEARTBEAT_ROUTE = f"{API}/sites/{{site}}/heartbeat"
_PATH = re.compile(re.escape(f"{API}/sites/") + f"({NAME_PATTERN[1:-1]})" + "/heartbeat")
MAX_BODY = 64 * 1024
"""Bodies larger than this (a heartbeat is a few hundred bytes) go to the full app."""


class HeartbeatLane:
    """ASGI middleware that serves `POST /api/v1/sites/{site}/heartbeat` when it can.

    It only acts while heartbeats are buffered (`heartbeat_flush_interval` > 0); written one
    by one, each is a database write and goes through the full route.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: Authenticator,
        service: FleetService,
        settings: ControlSettings,
    ) -> None:
        self.app = app
        self.auth = auth
        self.service = service
        self.settings = settings
        policy = policy_for("POST", HEARTBEAT_ROUTE)
        if policy is None:  # fail closed, as the app does for a route the policy forgot
            raise RuntimeError(f"POST {HEARTBEAT_ROUTE} is not in the access policy")
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope.get("root_path")
            or self.settings.heartbeat_flush_interval <= 0
        ):
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        site = match.group(1)
        secret = content_type = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                secret = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        who = self.auth.cached(_bearer(secret))
        size = _size(length)
        if (
            who is None
            or not allows(self.policy, who.role, token_site=who.site, site=site)
            or not _is_json(content_type)
            or size is None
        ):
            await self.app(scope, receive, send)
            return
        body = await _read(receive, size)
        if body is None:  # the client went away mid-body
            return
        try:
            status = HeartbeatIn.model_validate_json(body).model_dump(exclude_none=True)
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)
            return
        known, etag = self.service.queue_heartbeat(who, site, status, only_if_known=True)
        if not known:  # the ETag needs a database read: the full route does it in a thread
            await self.app(scope, _replay(body, receive), send)
            return
        payload = orjson.dumps({"desired_etag": etag})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(payload)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _bearer(header: bytes | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.decode("latin-1").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _is_json(content_type: bytes | None) -> bool:
    # The full route parses a body as JSON when it has no content type or a JSON one.
    if content_type is None:
        return True
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


def _size(length: bytes | None) -> int | None:
    """The declared body size if the lane may read it (chunked or large bodies: no)."""
    if length is None or not length.isdigit():
        return None
    size = int(length)
    return size if size <= MAX_BODY else None


async def _read(receive: Receive, size: int) -> bytes | None:
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > size:  # more than declared: HTTP/1.1 servers never pass that on
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already read body to the full app, then the real stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

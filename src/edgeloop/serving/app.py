"""The Open Inference Protocol v2 REST app: a lean ASGI callable over a ModelServer.

No framework on the hot path: the router is a split of the path, bodies are read with a
hard size limit, JSON goes through orjson, and arrays are never converted to lists.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from edgeloop import __version__
from edgeloop.errors import InferenceRequestError, PackageError, ServerOverloaded, ServingError
from edgeloop.serving.oip import (
    encode_infer_response,
    encode_tensors,
    error_body,
    parse_infer_request,
)
from edgeloop.serving.openapi import openapi_document
from edgeloop.serving.repository import scan_repository, token_matches
from edgeloop.serving.server import ModelServer
from edgeloop.serving.slot import ModelVersion

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
PLATFORMS = {"onnx": "onnxruntime_onnx", "sklearn": "sklearn_skops"}
EXTENSIONS = ["model_repository", "edgeloop_status", "edgeloop_feedback", "edgeloop_capture"]
MAX_LABELS = 10_000


class HTTPError(Exception):
    """An answer other than 200, with the protocol's error body."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or []


class ServingApp:
    """ASGI app serving OIP v2 for `server`; admin routes need `Bearer <token>`."""

    def __init__(self, server: ModelServer, token: str) -> None:
        self.server = server
        self.token = token
        self.max_body = server.config.max_body_bytes
        self.metrics = server.metrics
        self._openapi = orjson.dumps(openapi_document(__version__))
        self._counters: dict[tuple[str, int], Any] = {}
        # Request ids for clients that send none: unique per process start, cheap to make.
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self.max_in_flight = server.config.max_in_flight
        self._in_flight = 0
        self._ok: dict[str, tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            # The hot path, POST /v2/models/{name}/infer, straight to its handler: the router
            # below costs a split, comparisons and a coroutine frame on every request.
            if scope["method"] == "POST" and path.endswith("/infer"):
                parts = path.split("/")
                if len(parts) == 5 and parts[1] == "v2" and parts[2] == "models" and parts[3]:
                    await self._infer(parts[3], None, scope, receive, send)
                    return
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.server.start()
                except Exception as exc:
                    log.exception("server start failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.server.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routing ---------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        parts = scope["path"].strip("/").split("/")
        try:
            if parts[0] == "v2" and len(parts) >= 3 and parts[1] == "models":
                # (The usual infer path never gets here: __call__ takes it straight.)
                await self._model_route(method, parts[2], parts[3:] or [""], scope, receive, send)
                return
            status, body, headers = await self._other_route(method, parts, scope, receive)
        except HTTPError as exc:
            status, body, headers = exc.status, error_body(str(exc)), exc.headers
        except Exception as exc:  # never let one request take the server down
            log.exception("unexpected error on %s %s", method, scope["path"])
            status, body, headers = 500, error_body(f"internal error: {type(exc).__name__}"), []
        await _respond(send, status, body, headers)

    async def _model_route(
        self, method: str, name: str, rest: list[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        version: int | None = None
        if rest[0] == "versions" and len(rest) >= 2:
            version = _version_number(rest[1])
            rest = rest[2:] or [""]
        action = rest[0] if len(rest) == 1 else "?"
        try:
            if action == "infer":
                _method(method, "POST")
                await self._infer(name, version, scope, receive, send)
                return
            if action == "feedback" and version is None:
                _method(method, "POST")
                status, body = 200, await self._feedback(name, scope, receive)
            elif action == "ready":
                _method(method, "GET")
                active = self._version(name, version)
                status, body = 200, orjson.dumps({"name": name, "ready": True,
                                                  "version": str(active.version)})  # fmt: skip
            elif action == "":
                _method(method, "GET")
                status, body = 200, self._model_metadata(name, version)
            else:
                raise HTTPError(404, f"no such route: {scope['path']}")
        except HTTPError as exc:
            await _respond(send, exc.status, error_body(str(exc)), exc.headers)
            return
        await _respond(send, status, body, [])

    async def _other_route(
        self, method: str, parts: list[str], scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        path = "/".join(parts)
        if path == "v2/health/live":
            _method(method, "GET")
            return 200, b'{"live":true}', []
        if path == "v2/health/ready":
            _method(method, "GET")
            ready = self._ready()
            return (200 if ready else 503), orjson.dumps({"ready": ready}), []
        if path == "v2":
            _method(method, "GET")
            doc = {"name": "edgeloop", "version": __version__, "extensions": EXTENSIONS}
            return 200, orjson.dumps(doc), []
        if path in ("openapi.json", "v2/openapi.json"):
            _method(method, "GET")
            return 200, self._openapi, []
        if path == "metrics":
            _method(method, "GET")
            return 200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4")]
        if parts[:2] == ["v2", "repository"] or path == "v2/status":
            self._authorize(scope)
            return await self._admin(method, parts, receive, scope)
        raise HTTPError(404, f"no such route: /{path}")

    # -- inference ---------------------------------------------------------------------
    async def _infer(
        self, name: str, version: int | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # One coroutine for the whole request: each await of another costs on every request.
        # Requests still reading their body or waiting on the model hold memory: bound them.
        if self._in_flight >= self.max_in_flight:
            self._count(name, 503)
            self.metrics.overloaded.labels(name).inc()
            message = f"server at capacity ({self._in_flight} requests in flight); retry shortly"
            await _respond(send, 503, error_body(message), [(b"retry-after", b"1")])
            return
        started = time.perf_counter()
        slot = self.server.slots.get(name)
        active = slot.acquire() if slot is not None else None
        if active is None or slot is None:
            self._count(name, 404 if slot is None else 503)
            status, message = (404, f"unknown model {name!r}") if slot is None else (
                503, f"model {name!r} is not loaded")  # fmt: skip
            headers = [] if status == 404 else [(b"retry-after", b"1")]
            await _respond(send, status, error_body(message), headers)
            return
        capture = self.server.capture
        capturing = capture is not None and capture.sampled()
        self._in_flight += 1
        try:
            if version is not None and version != active.version:
                raise HTTPError(404, f"{name} version {version} is not loaded; "
                                f"version {active.version} is serving")  # fmt: skip
            body = await _read_body(scope, receive, self.max_body)
            request = parse_infer_request(body, active.input_schema)
            outputs = active.batcher.infer_now(request.inputs, request.rows)
            if outputs is None:
                outputs = await active.batcher.enqueue(request.inputs)
            request_id = request.id or f"{self._id_prefix}-{next(self._ids)}"
            # A captured request keeps the outputs' JSON, encoded once for both.
            encoded = encode_tensors(outputs) if capturing else None
            payload = encode_infer_response(
                name, active.version, request_id, outputs, request.outputs, encoded=encoded
            )
        except HTTPError as exc:
            self._count(name, exc.status)
            await _respond(send, exc.status, error_body(str(exc)), exc.headers)
            return
        except InferenceRequestError as exc:
            self._count(name, exc.status)
            await _respond(send, exc.status, error_body(str(exc)), [])
            return
        except ServerOverloaded as exc:
            self._count(name, 503)
            self.metrics.overloaded.labels(name).inc()
            retry = str(max(1, round(exc.retry_after))).encode()
            await _respond(send, 503, error_body(str(exc)), [(b"retry-after", retry)])
            return
        except Exception as exc:  # a model failing on this request: answer, keep serving
            log.exception("inference failed on %s %s", scope["method"], scope["path"])
            self._count(name, 500)
            await _respond(send, 500, error_body(f"internal error: {type(exc).__name__}"), [])
            return
        finally:
            self._in_flight -= 1
            slot.release(active)
        elapsed = time.perf_counter() - started
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", JSON), (b"content-length", str(len(payload)).encode()),
            (b"x-model-version", active.version_header)]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})
        # A success is counted and timed through one lookup (the request path's metrics).
        ok = self._ok.get(name)
        if ok is None:
            ok = self._ok[name] = (self.metrics.requests.labels(name, "200"),
                                   self.metrics.latency.labels(name))  # fmt: skip
        ok[0].inc()
        ok[1].observe(elapsed)
        if capture is not None and encoded is not None:  # encoded only when capturing
            capture.offer_inference(
                request_id, name, active.version, request.inputs, encoded, elapsed * 1000.0
            )

    def _count(self, name: str, status: int) -> None:
        counter = self._counters.get((name, status))
        if counter is None:
            counter = self._counters[(name, status)] = self.metrics.requests.labels(
                name, str(status)
            )
        counter.inc()

    def _version(self, name: str, version: int | None) -> ModelVersion:
        slot = self.server.slots.get(name)
        if slot is None:
            raise HTTPError(404, f"unknown model {name!r}")
        active = slot.active
        if active is None:
            raise HTTPError(400, f"model {name!r} is not loaded")
        if version is not None and version != active.version:
            raise HTTPError(404, f"{name} version {version} is not loaded; "
                            f"version {active.version} is serving")  # fmt: skip
        return active

    def _model_metadata(self, name: str, version: int | None) -> bytes:
        active = self._version(name, version)
        manifest = active.manifest
        doc = {
            "name": name,
            "versions": [str(active.version)],
            "platform": PLATFORMS.get(manifest.runtime.value, manifest.runtime.value),
            "inputs": [spec.model_dump(mode="json") for spec in manifest.inputs],
            "outputs": [spec.model_dump(mode="json") for spec in manifest.outputs],
            "parameters": {"task": manifest.task, "feature_names": manifest.feature_names},
        }
        return orjson.dumps(doc)

    def _ready(self) -> bool:
        """Ready when some model is known and every model not unloaded on purpose serves."""
        slots = self.server.slots.values()
        pinned = self.server.pinned
        wanted = [s for s in slots if pinned.get(s.name, 0) is not None]
        return bool(self.server.slots) and all(s.active is not None for s in wanted)

    # -- feedback ----------------------------------------------------------------------
    async def _feedback(self, name: str, scope: Scope, receive: Receive) -> bytes:
        capture = self.server.capture
        if capture is None:
            raise HTTPError(503, "capture is not configured; start the server with --capture-to")
        if name not in self.server.slots:
            raise HTTPError(404, f"unknown model {name!r}")
        body = await _read_body(scope, receive, self.max_body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
        items = doc.get("labels", [doc]) if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items or len(items) > MAX_LABELS:
            raise HTTPError(400, f"send {{'request_id', 'label'}} or {{'labels': [...]}} "
                            f"with 1 to {MAX_LABELS} labels")  # fmt: skip
        now = time.time()
        records = []
        for item in items:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("request_id"), str)
                or ("label" not in item)
            ):
                raise HTTPError(400, "each label needs a string 'request_id' and a 'label'")
            records.append({"kind": "label", "request_id": item["request_id"], "model": name,
                            "label": item["label"], "time": now})  # fmt: skip
        accepted = sum(capture.offer(record) for record in records)
        if accepted < len(records):
            raise HTTPError(503, f"capture queue full: {accepted} of {len(records)} labels kept",
                            [(b"retry-after", b"1")])  # fmt: skip
        return orjson.dumps({"accepted": accepted})

    # -- admin: repository extension and status ----------------------------------------
    def _authorize(self, scope: Scope) -> None:
        header = _header(scope, b"authorization")
        if not token_matches(header, self.token):
            raise HTTPError(401, "missing or wrong token: send 'Authorization: Bearer <token>' "
                            "with the token from the server's token file",
                            [(b"www-authenticate", b"Bearer")])  # fmt: skip

    async def _admin(
        self, method: str, parts: list[str], receive: Receive, scope: Scope
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if parts == ["v2", "status"]:
            _method(method, "GET")
            return 200, orjson.dumps(self.server.status()), []
        if parts == ["v2", "repository", "index"]:
            _method(method, "POST")
            await _read_body(scope, receive, self.max_body)
            return 200, orjson.dumps(self._index()), []
        if len(parts) == 5 and parts[2] == "models" and parts[4] in ("load", "unload"):
            _method(method, "POST")
            name = parts[3]
            body = await _read_body(scope, receive, self.max_body)
            try:
                if parts[4] == "load":
                    loaded = await self.server.load(name, _load_version(body))
                    doc = {"name": name, "version": str(loaded.version), "state": "READY"}
                else:
                    await self.server.unload(name)
                    doc = {"name": name, "state": "UNAVAILABLE"}
            except PackageError as exc:
                return 400, error_body(str(exc)), []
            except ServingError as exc:
                return 400, error_body(str(exc)), []
            return 200, orjson.dumps(doc), []
        raise HTTPError(404, f"no such route: /{'/'.join(parts)}")

    def _index(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[tuple[str, int]] = set()
        for name, slot in sorted(self.server.slots.items()):
            if slot.active is not None:
                rows.append({"name": name, "version": str(slot.active.version), "state": "READY",
                             "reason": ""})  # fmt: skip
                seen.add((name, slot.active.version))
            elif slot.last_outcome is not None and not slot.last_outcome.ok:
                rows.append({"name": name, "version": "", "state": "UNAVAILABLE",
                             "reason": slot.last_outcome.error or ""})  # fmt: skip
        if self.server.config.repository is not None:
            for name, entries in scan_repository(self.server.config.repository).items():
                for entry in entries:
                    if (name, entry.version) not in seen:
                        rows.append({"name": name, "version": str(entry.version),
                                     "state": "UNAVAILABLE", "reason": "not loaded"})  # fmt: skip
        return rows


def _method(method: str, allowed: str) -> None:
    if method != allowed:
        raise HTTPError(405, f"method {method} not allowed here; use {allowed}",
                        [(b"allow", allowed.encode())])  # fmt: skip


def _version_number(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise HTTPError(400, f"model version must be a positive integer, not {text[:40]!r}")
    return int(text)


def _load_version(body: bytes) -> int | None:
    if not body.strip():
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
    params = doc.get("parameters") if isinstance(doc, dict) else None
    raw = params.get("version") if isinstance(params, dict) else None
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).isdigit():
        raise HTTPError(400, "parameters.version must be a positive integer")
    return _version_number(str(raw))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    message = await receive()
    if not message.get("more_body") and message["type"] == "http.request":
        # The whole body in one message (the common case): no header scan, no join.
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise HTTPError(413, f"request body is over the {limit} byte limit")
        return body
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body of {declared} bytes is over the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is over the {limit} byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    content_type = next((v for k, v in headers if k == b"content-type"), None)
    all_headers = [
        (b"content-type", content_type or JSON),
        (b"content-length", str(len(body)).encode()),
        *[(k, v) for k, v in headers if k != b"content-type"],
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})

"""The control-plane ASGI app: every route is checked against edgeloop.model.rbac.POLICY.

`create_control_app(settings)` builds it; `serve_control_plane(settings, ...)` runs it. Only
/healthz and /readyz answer without a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import sqlalchemy as sa
from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeloop.dashboard import DashboardSources, mount_dashboard
from edgeloop.errors import FleetConflict, FleetError, FleetNotFound
from edgeloop.fleet.auth import Authenticator, Principal, TokenRefused
from edgeloop.fleet.control import ControlPlane, ControlSettings, build_control_plane
from edgeloop.fleet.heartbeat_lane import HeartbeatLane
from edgeloop.fleet.schemas import (
    ActionIn,
    DeploymentIn,
    GateIn,
    HeartbeatIn,
    JoinTokenIn,
    LabelsIn,
    ProjectIn,
    ReportIn,
    RolloutIn,
    TokenIn,
)
from edgeloop.model.rbac import API, OPEN_ROUTES, POLICY, allows, policy_for
from edgeloop.model.rollout import WaveSpec
from edgeloop.workspace.config import NAME_PATTERN

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 75
"""How long the control plane keeps an idle connection open. Longer than any client keeps
one in its pool (httpx 5 s, aiohttp 15 s): a server that closes first races a client
reusing the connection, whose request (a heartbeat, a report) then fails with a
disconnect. With uvicorn's default, 5 s, thousands of heartbeats failed so at 5,000
simulated sites (benchmarks/fleet.py)."""


def _name() -> Any:
    return PathParam(pattern=NAME_PATTERN)


class _Api:
    """Registers routes under /api/v1 with the authorization dependency on each."""

    def __init__(self, app: FastAPI, guard: Any) -> None:
        self.app = app
        self.guard = guard

    def _add(self, method: str, path: str, **kw: Any) -> Callable[[Any], Any]:
        return self.app.api_route(API + path, methods=[method], dependencies=[self.guard], **kw)

    def get(self, path: str, **kw: Any) -> Callable[[Any], Any]:
        return self._add("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Any], Any]:
        return self._add("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Any], Any]:
        return self._add("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Any], Any]:
        return self._add("DELETE", path, **kw)


class DesiredNotifier:
    """Wakes long-polls when a site's desired state changes in this process.

    Other replicas' changes are seen by re-reading the database every `recheck` seconds.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = {}
        self._lock = threading.Lock()

    def notify(self, project: str, site: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            waiters = list(self._waiters.get((project, site), ()))
        for waiter in waiters:
            loop.call_soon_threadsafe(waiter.set)

    def subscribe(self, project: str, site: str) -> asyncio.Event:
        """Register interest before reading the state, so no change can slip in between."""
        self._loop = asyncio.get_running_loop()
        waiter = asyncio.Event()
        with self._lock:
            self._waiters.setdefault((project, site), set()).add(waiter)
        return waiter

    def unsubscribe(self, project: str, site: str, waiter: asyncio.Event) -> None:
        key = (project, site)
        with self._lock:
            self._waiters[key].discard(waiter)
            if not self._waiters[key]:
                del self._waiters[key]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class AuthFailed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _authorizer(auth: Authenticator) -> Callable[[Request], Awaitable[Principal]]:
    async def authorize(request: Request) -> Principal:
        route = request.scope.get("route")
        path = getattr(route, "path", "")
        policy = policy_for(request.method, path)
        if policy is None:  # fail closed: a route the policy forgot is nobody's
            raise AuthFailed(403, f"{request.method} {path} is not in the access policy")
        secret = _bearer(request)
        who = auth.cached(secret)
        if who is None:
            try:
                who = await anyio.to_thread.run_sync(auth.authenticate, secret)
            except TokenRefused as exc:
                raise AuthFailed(401, str(exc)) from None
        request.state.principal = who
        site = request.path_params.get("site")
        if not allows(policy, who.role, token_site=who.site, site=site):
            scope = f" of site {who.site}" if who.site else ""
            raise AuthFailed(
                403,
                f"a {who.role.value} token{scope} may not call {request.method} {path}; "
                f"allowed: {', '.join(sorted(r.value for r in policy.roles))}",
            )
        return who

    return authorize


def _audit(request: Request, **detail: Any) -> None:
    """Attach what a mutating call changed to its audit record."""
    request.state.audit = detail


class AuditMiddleware:
    """Appends one audit record per mutating call (who, what, when, from where, outcome),
    refused ones included; routine successful heartbeats are left out (they are telemetry)."""

    def __init__(self, app: ASGIApp, record: Callable[[dict[str, Any]], None]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state = scope.get("state") or {}
            who: Principal | None = state.get("principal")
            path: str = scope["path"]
            if not (status < 400 and path.endswith("/heartbeat")):
                client = scope.get("client")
                entry = {
                    "project": who.project if who else None,
                    "token_id": who.token_id if who else None,
                    "actor": who.name if who else None,
                    "role": who.role.value if who else None,
                    "client": f"{client[0]}" if client else None,
                    "method": scope["method"],
                    "path": path[:1000],
                    "status": status,
                    "detail": state.get("audit"),
                }
                try:
                    await anyio.to_thread.run_sync(self.record, entry)
                except Exception:
                    log.exception("could not write audit record for %s %s", scope["method"], path)


def create_control_app(settings: ControlSettings, *, plane: ControlPlane | None = None) -> FastAPI:
    """The control-plane FastAPI app for `settings` (or for an already built `plane`)."""
    plane = plane or build_control_plane(settings)
    notifier = DesiredNotifier()
    plane.service.on_desired_changed = notifier.notify
    service = plane.service

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_tick_forever(plane, settings.tick_interval))]
        if settings.heartbeat_flush_interval > 0:
            tasks.append(
                asyncio.create_task(_flush_forever(plane, settings.heartbeat_flush_interval))
            )
        if settings.token_cache_seconds > 0:
            tasks.append(
                asyncio.create_task(
                    _refresh_tokens_forever(plane, settings.token_cache_seconds / 2)
                )
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await anyio.to_thread.run_sync(plane.service.flush_heartbeats)

    app = FastAPI(
        title="edgeloop control plane",
        version="1",
        description="Fleet control plane: sites, tokens, desired state, rollouts, audit. "
        "Every route but /healthz and /readyz needs `Authorization: Bearer <token>`.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.plane = plane
    authorize = _authorizer(plane.auth)
    # Routes are registered on the app itself (not an included router) so that each route's
    # full path template is what the policy and the audit see.
    api = _Api(app, Depends(authorize))
    Who = Depends(authorize)

    @app.exception_handler(AuthFailed)
    async def _auth_failed(_r: Request, exc: AuthFailed) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="edgeloop"'} if exc.status == 401 else None
        return _error(exc.status, exc.message, headers)

    @app.exception_handler(FleetNotFound)
    async def _not_found(_r: Request, exc: FleetNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(FleetConflict)
    async def _conflict(_r: Request, exc: FleetConflict) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(FleetError)
    async def _fleet_error(_r: Request, exc: FleetError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return _error(422, "; ".join(parts)[:2000])

    @app.exception_handler(HTTPException)
    async def _http(_r: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    # async: a liveness probe must not wait for a threadpool slot behind database calls.
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        try:
            with plane.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            return _error(503, f"database not reachable: {type(exc).__name__}")
        return JSONResponse({"status": "ready"})

    # -- identity, projects, tokens, audit --------------------------------------------------

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @api.get("/whoami")
    def whoami(who: Principal = Who) -> dict[str, Any]:
        return {
            "token_id": who.token_id,
            "project": who.project,
            "name": who.name,
            "role": who.role.value,
            "site": who.site,
        }

    @api.get("/projects")
    def list_projects() -> list[dict[str, Any]]:
        return service.list_projects()

    @api.post("/projects", status_code=201)
    def create_project(request: Request, body: ProjectIn, who: Principal = Who) -> dict[str, Any]:
        secret = service.create_project(who, body.name)
        _audit(request, project=body.name)
        return {"project": body.name, "admin_token": secret}

    @api.get("/tokens")
    def list_tokens(who: Principal = Who) -> list[dict[str, Any]]:
        return service.list_tokens(who)

    @api.post("/tokens", status_code=201)
    def create_token(request: Request, body: TokenIn, who: Principal = Who) -> dict[str, Any]:
        secret, row = service.create_token(who, body.name, body.role, body.expires_in)
        _audit(request, token=row["id"], role=body.role.value, name=body.name)
        return {**row, "token": secret}

    @api.delete("/tokens/{token_id}")
    def revoke_token(request: Request, token_id: str, who: Principal = Who) -> dict[str, Any]:
        result = service.revoke_token(who, token_id)
        plane.auth.forget(token_id)
        _audit(request, token=token_id)
        return result

    @api.get("/audit")
    def list_audit(
        who: Principal = Who,
        after: int = Query(0, ge=0),
        limit: int = Query(100, ge=1, le=10_000),
        since: float | None = Query(None),
    ) -> list[dict[str, Any]]:
        return service.list_audit(who, after=after, limit=limit, since=since)

    # -- sites ------------------------------------------------------------------------------

    @api.post("/join-tokens", status_code=201)
    def create_join_token(
        request: Request, body: JoinTokenIn, who: Principal = Who
    ) -> dict[str, Any]:
        secret = service.create_join_token(who, body.site, body.labels, body.expires_in)
        _audit(request, site=body.site, labels=body.labels)
        return {"site": body.site, "join_token": secret, "expires_in": body.expires_in}

    @api.post("/join", status_code=201)
    def join(request: Request, who: Principal = Who) -> dict[str, Any]:
        client = request.client.host if request.client else None
        result = service.join(who, client)
        plane.auth.forget()  # the site's previous agent token was revoked
        _audit(request, site=who.site)
        return result

    @api.get("/sites")
    def list_sites(who: Principal = Who, selector: str = Query("")) -> list[dict[str, Any]]:
        try:
            return service.list_sites(who, selector)
        except ValueError as exc:
            raise FleetError(str(exc)) from None

    @api.get("/sites/{site}")
    def get_site(site: str = _name(), who: Principal = Who) -> dict[str, Any]:
        return service.get_site(who, site)

    @api.put("/sites/{site}/labels")
    def set_labels(
        request: Request, body: LabelsIn, site: str = _name(), who: Principal = Who
    ) -> dict[str, Any]:
        _audit(request, site=site, labels=body.labels)
        return service.set_labels(who, site, body.labels)

    @api.delete("/sites/{site}")
    def remove_site(request: Request, site: str = _name(), who: Principal = Who) -> dict[str, Any]:
        _audit(request, site=site)
        result = service.remove_site(who, site)
        plane.auth.forget()  # the site's tokens were revoked
        return result

    @api.post("/sites/{site}/heartbeat")
    async def heartbeat(
        body: HeartbeatIn, site: str = _name(), who: Principal = Who
    ) -> JSONResponse:
        """Record the site's status; answers with the ETag of its desired state, so an agent
        knows when to fetch it. Buffered and written in batches (see heartbeat_flush_interval).
        """
        status = body.model_dump(exclude_none=True)
        if settings.heartbeat_flush_interval <= 0:
            result = await anyio.to_thread.run_sync(service.heartbeat, who, site, status)
            return JSONResponse(result)
        known, etag = service.queue_heartbeat(who, site, status)
        if not known:
            etag = await anyio.to_thread.run_sync(service.desired_etag, who.project, site)
        return JSONResponse({"desired_etag": etag})

    @api.post("/sites/{site}/reports")
    def report(
        request: Request, body: ReportIn, site: str = _name(), who: Principal = Who
    ) -> dict[str, Any]:
        _audit(request, site=site, **body.model_dump(exclude_none=True))
        return service.report(who, site, body.model_dump(exclude_none=True))

    @api.get(
        "/sites/{site}/desired",
        responses={304: {"description": "unchanged (If-None-Match matched for `wait` seconds)"}},
    )
    async def get_desired(
        request: Request,
        site: str = _name(),
        who: Principal = Who,
        wait: float = Query(
            0.0,
            ge=0,
            le=300,
            description="long-poll: seconds to wait for a change when If-None-Match matches",
        ),
    ) -> Response:
        """The site's signed desired state; long-polls while it equals `If-None-Match`."""
        known = request.headers.get("if-none-match")
        deadline = anyio.current_time() + min(wait, settings.long_poll_max)
        row: dict[str, Any] | None = None
        use_cache = True  # trust the in-memory ETag only before the first wait
        while True:
            waiter = notifier.subscribe(who.project, site)
            try:
                if (
                    use_cache
                    and known is not None
                    and service.cached_etag(who.project, site) == known
                ):
                    etag: str | None = known
                else:
                    row = await anyio.to_thread.run_sync(service.get_desired, who, site)
                    etag = row["etag"] if row else None
                remaining = deadline - anyio.current_time()
                if etag != known or remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        waiter.wait(), min(remaining, settings.long_poll_recheck)
                    )
                use_cache = False  # woken by a change, or time to look for another replica's
            finally:
                notifier.unsubscribe(who.project, site, waiter)
        if etag == known:
            return Response(status_code=304, headers={"ETag": str(etag)})
        if row is None:
            return _error(404, f"site {site} has no desired state yet (no deployment selects it)")
        envelope = plane.service.signer.envelope(row["document"], row["signature"])
        body = {
            "etag": etag,
            "generation": row["generation"],
            "document": row["document"],
            "envelope": envelope,
        }
        return JSONResponse(body, headers={"ETag": str(etag), "Cache-Control": "no-store"})

    # -- deployments and rollouts -----------------------------------------------------------

    @api.get("/deployments")
    def list_deployments(who: Principal = Who) -> list[dict[str, Any]]:
        return service.list_deployments(who)

    @api.put("/deployments/{name}")
    def put_deployment(
        request: Request, body: DeploymentIn, name: str = _name(), who: Principal = Who
    ) -> dict[str, Any]:
        _audit(request, deployment=name, **body.model_dump(exclude_none=True))
        policy = None
        if body.alias is not None:
            gate = (body.gate or GateIn()).model_dump()
            policy = {"waves": body.waves, "gate": gate}
        return service.put_deployment(
            who, name, body.model, body.version, body.selector, alias=body.alias, policy=policy
        )

    @api.delete("/deployments/{name}")
    def delete_deployment(
        request: Request, name: str = _name(), who: Principal = Who
    ) -> dict[str, Any]:
        _audit(request, deployment=name)
        return service.delete_deployment(who, name)

    @api.get("/rollouts")
    def list_rollouts(who: Principal = Who) -> list[dict[str, Any]]:
        return service.list_rollouts(who)

    @api.post("/rollouts", status_code=201)
    def start_rollout(request: Request, body: RolloutIn, who: Principal = Who) -> dict[str, Any]:
        result = service.start_rollout(
            who, body.deployment, body.version, WaveSpec.parse(body.waves), body.gate.to_gate()
        )
        _audit(
            request,
            rollout=result["id"],
            deployment=body.deployment,
            version=body.version,
            waves=body.waves,
        )
        return result

    @api.get("/rollouts/{rollout_id}")
    def get_rollout(rollout_id: str, who: Principal = Who) -> dict[str, Any]:
        return service.get_rollout(who, rollout_id)

    def _action(action: str) -> Callable[..., dict[str, Any]]:
        def act(
            request: Request,
            rollout_id: str,
            body: ActionIn | None = Body(None),
            who: Principal = Who,
        ) -> dict[str, Any]:
            reason = body.reason if body else ""
            _audit(request, rollout=rollout_id, action=action, reason=reason)
            return service.act(who, rollout_id, action, reason)

        act.__name__ = f"{action}_rollout"
        return act

    for action in ("pause", "resume", "abort", "rollback"):
        api.post(f"/rollouts/{{rollout_id}}/{action}", name=f"{action}_rollout")(_action(action))

    # The dashboard's read-only routes (in POLICY like every other) and its pages at /ui/.
    mount_dashboard(app, Depends(authorize), DashboardSources.from_settings(settings))

    def _openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            app.openapi_schema["security"] = [{"bearer": []}]
        return app.openapi_schema

    app.openapi = _openapi  # type: ignore[method-assign]
    check_policy_covers(app)
    app.add_middleware(AuditMiddleware, record=service.record_audit)
    # Outside the audit middleware: the lane answers only successful heartbeats, which are
    # not audited, and hands everything else (refusals included) to the audited app.
    app.add_middleware(HeartbeatLane, auth=plane.auth, service=service, settings=settings)
    return app


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves."""
    out = set()
    for route in app.routes:
        if isinstance(route, APIRoute):
            out |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
    return out


def check_policy_covers(app: FastAPI) -> None:
    """Refuse to build an app with a route the policy does not name, or a policy without route."""
    served = app_routes(app) - OPEN_ROUTES
    named = {p.key for p in POLICY}
    if served != named:
        raise RuntimeError(
            f"access policy and routes differ: unlisted routes {sorted(served - named)}, "
            f"policies without a route {sorted(named - served)}"
        )


async def _tick_forever(plane: ControlPlane, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            for note in await anyio.to_thread.run_sync(plane.service.tick):
                log.info("%s", note)
        except Exception:
            log.exception("rollout tick failed; retrying in %ss", interval)


async def _flush_forever(plane: ControlPlane, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(plane.service.flush_heartbeats)
        except Exception:
            log.exception("could not write heartbeats; retrying in %ss", interval)


async def _refresh_tokens_forever(plane: ControlPlane, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(plane.auth.refresh)
        except Exception:  # entries then expire as usual and are looked up one by one
            log.exception("could not re-check cached tokens; retrying in %ss", interval)


def serve_control_plane(
    settings: ControlSettings, *, host: str = "127.0.0.1", port: int = 8700
) -> None:
    """Run the control plane with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(
        create_control_app(settings),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # Long-polls hold connections for up to a minute; do not wait for them on shutdown.
        timeout_graceful_shutdown=3,
    )

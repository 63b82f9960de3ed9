"""The dashboard on the control-plane app: read-only JSON routes under /api/v1 (each in the
RBAC policy, readers only) and the static pages at /ui/, served with a strict CSP.

The pages hold no data and no secret: everything they show comes from the JSON routes,
fetched with the token the person typed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Response
from fastapi import Path as PathParam
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeloop.dashboard.readers import DriftReports, QualityScores, read_timeline
from edgeloop.dashboard.sources import DashboardSources
from edgeloop.dashboard.views import lineage_graph, model_summary
from edgeloop.errors import EdgeloopError, FleetError, FleetNotFound, ModelNotFound
from edgeloop.model.manifest import MODEL_NAME_PATTERN
from edgeloop.model.rbac import API

STATIC_DIR = Path(__file__).parent / "static"
UI_PATH = "/ui"

#: No inline script or style, nothing from another origin, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


class SecurityHeaders:
    """Adds the dashboard's security headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode("latin-1").lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _model_name() -> Any:
    return PathParam(pattern=MODEL_NAME_PATTERN)


def mount_dashboard(app: FastAPI, guard: Any, sources: DashboardSources) -> None:
    """Add the dashboard's JSON routes (each guarded by `guard`, the control plane's
    authorization dependency) and its pages at /ui/ to `app`."""
    _add_api(app, guard, sources)
    app.mount(UI_PATH, SecurityHeaders(StaticFiles(directory=STATIC_DIR, html=True)), name="ui")

    async def to_ui(_request: Request) -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)

    app.router.add_route("/", to_ui, methods=["GET"], include_in_schema=False)
    app.router.add_route(UI_PATH, to_ui, methods=["GET"], include_in_schema=False)


def _add_api(app: FastAPI, guard: Any, sources: DashboardSources) -> None:
    drift = DriftReports(sources.store) if sources.store is not None else None
    quality = (
        QualityScores(sources.store, sources.monitoring) if sources.store is not None else None
    )

    def get(path: str) -> Any:
        return app.api_route(API + path, methods=["GET"], dependencies=[guard])

    def registry() -> Any:
        try:
            return sources.registry()
        except EdgeloopError as exc:
            raise FleetError(f"the model registry cannot be opened: {exc}") from None

    @get("/registry/models")
    def list_models(response: Response) -> dict[str, Any]:
        """Every model in the registry with its version count and aliases."""
        response.headers["cache-control"] = "no-store"
        reg = registry()
        if reg is None:
            return {"available": False, "models": []}
        models = []
        for name in reg.models():
            versions = [v.to_json() for v in reg.versions(name, include_all=True)]
            models.append(model_summary(name, versions, reg.aliases(name)))
        return {"available": True, "models": models}

    @get("/registry/models/{name}")
    def get_model(response: Response, name: str = _model_name()) -> dict[str, Any]:
        """A model's versions (metrics, lineage, card, aliases) and its lineage graph."""
        response.headers["cache-control"] = "no-store"
        reg = registry()
        if reg is None:
            raise FleetNotFound("this control plane has no model registry (no workspace)")
        try:
            versions = [v.to_json() for v in reg.versions(name, include_all=True)]
        except ModelNotFound as exc:
            raise FleetNotFound(str(exc)) from None
        return {
            "name": name,
            "aliases": reg.aliases(name),
            "versions": versions,
            "lineage": lineage_graph(name, versions),
        }

    @get("/journal")
    def journal(
        response: Response,
        before: int | None = Query(None, ge=1, description="only entries with a lower seq"),
        limit: int = Query(200, ge=1, le=1000),
        type: list[str] = Query(
            [], max_length=50, description="event types; `family.*` for a family"
        ),
    ) -> dict[str, Any]:
        """The core journal, newest first: the loop's timeline."""
        response.headers["cache-control"] = "no-store"
        if sources.journal is None:
            return {"entries": [], "last_seq": 0, "next_before": None}
        return read_timeline(sources.journal, before=before, limit=limit, types=type)

    @get("/monitoring")
    def monitoring(response: Response) -> dict[str, Any]:
        """Models the monitor watches: configured ones and those with a reference profile."""
        response.headers["cache-control"] = "no-store"
        found = set(sources.monitoring.models)
        if drift is not None:
            found.update(drift.models())
        return {"models": sorted(found)}

    @get("/monitoring/{name}/drift")
    def drift_reports(
        response: Response,
        name: str = _model_name(),
        limit: int = Query(48, ge=1, le=500, description="windows per site"),
    ) -> dict[str, Any]:
        """Per site, the last drift reports of a model (oldest first) and the newest plots."""
        response.headers["cache-control"] = "no-store"
        sites = drift.by_site(name, limit) if drift is not None else []
        return {"model": name, "sites": sites}

    @get("/monitoring/{name}/quality")
    def quality_scores(
        response: Response,
        name: str = _model_name(),
        since: str = Query("24h", max_length=16, description="how far back, e.g. 6h or 7d"),
    ) -> dict[str, Any]:
        """Live quality of a model per site, version and time bucket."""
        response.headers["cache-control"] = "no-store"
        if quality is None:
            return {"model": name, "points": [], "metric": None, "bound": None, "since": since}
        try:
            return quality.scores(name, since)
        except EdgeloopError as exc:
            raise FleetError(str(exc)) from None

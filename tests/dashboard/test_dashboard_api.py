"""The dashboard's JSON routes and static pages on a control plane of a seeded workspace:
what each route answers, who may read it, and the headers the pages are served with."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dashboard_seed import (
    HOSTILE,
    MODEL,
    Seeded,
    make_workspace,
    seed_fleet,
    seed_workspace,
    settings_for,
)
from starlette.testclient import TestClient

from edgeloop.dashboard.routes import CONTENT_SECURITY_POLICY
from edgeloop.fleet.app import create_control_app
from edgeloop.fleet.auth import read_secret_file
from edgeloop.fleet.control import ControlPlane, ControlSettings, build_control_plane
from edgeloop.model.events import Event
from edgeloop.testing.fleet import make_fleet

BASE = "http://control"


@dataclass
class Dashboard:
    http: TestClient
    plane: ControlPlane
    seeded: Seeded
    settings: ControlSettings

    def get(self, path: str, token: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(path, headers=headers, **kw)


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    tmp = tmp_path_factory.mktemp("dash")
    ws = make_workspace(tmp / "ws")
    seed_workspace(ws, tmp)
    settings = settings_for(ws)
    plane = build_control_plane(settings)
    http = TestClient(create_control_app(settings, plane=plane), base_url=BASE)
    admin = read_secret_file(settings.admin_token_path)
    seeded = seed_fleet(http, BASE, admin, plane.service.tick)
    yield Dashboard(http, plane, seeded, settings)
    http.close()
    plane.engine.dispose()


def test_models_route_lists_versions_and_aliases(dash: Dashboard) -> None:
    body = dash.get("/api/v1/registry/models", dash.seeded.viewer).json()
    assert body["available"] is True
    (churn,) = body["models"]
    assert churn["name"] == MODEL and churn["versions"] == 2 and churn["latest"] == 2
    assert churn["aliases"] == {"champion": 1, "candidate": 2}


def test_model_route_has_lineage_graph_card_and_metrics(dash: Dashboard) -> None:
    body = dash.get(f"/api/v1/registry/models/{MODEL}", dash.seeded.viewer).json()
    v1, v2 = body["versions"]
    assert v1["aliases"] == ["champion"] and "parent" not in v1["lineage"]
    assert v2["metrics"]["accuracy"] == pytest.approx(0.94)
    assert v2["lineage"]["parent"] == 1 and v2["lineage"]["run_id"] == "run-0002"
    assert HOSTILE in v2["card"]["description"]  # kept as data; the page shows it as text
    ids = {n["id"] for n in body["lineage"]["nodes"]}
    assert {"site:edge-a", "site:edge-b", "run:run-0002", "dataset:snap-2", "version:2"} <= ids
    edges = {(e["source"], e["target"]) for e in body["lineage"]["edges"]}
    assert ("version:1", "version:2") in edges  # v2 refines the champion of its time
    assert ("site:edge-b", "dataset:snap-2") in edges
    assert ("site:edge-b", "dataset:snap-1") not in edges  # v1 saw edge-a's data only


def test_unknown_model_is_404_and_bad_name_is_422(dash: Dashboard) -> None:
    missing = dash.get("/api/v1/registry/models/nope", dash.seeded.viewer)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    bad = dash.get("/api/v1/registry/models/..%2Fetc", dash.seeded.viewer)
    assert bad.status_code in (404, 422)
    assert dash.get("/api/v1/monitoring/UPPER/drift", dash.seeded.viewer).status_code == 422


def test_drift_route_gives_each_sites_windows_and_latest_plots(dash: Dashboard) -> None:
    body = dash.get(f"/api/v1/monitoring/{MODEL}/drift", dash.seeded.viewer).json()
    by_site = {s["site"]: s for s in body["sites"]}
    assert set(by_site) == {"edge-a", "edge-b"}
    a, b = by_site["edge-a"], by_site["edge-b"]
    assert len(a["reports"]) == len(b["reports"]) == 3
    assert [r["status"] for r in a["reports"]] == ["no_drift"] * 3
    assert b["reports"][0]["status"] == "no_drift" and b["reports"][-1]["status"] == "drift"
    assert "amount" in b["reports"][-1]["drifted"]
    ends = [r["window_end"] for r in b["reports"]]
    assert ends == sorted(ends)
    amount = next(f for f in b["reports"][-1]["features"] if f["name"] == "amount")
    assert amount["psi"] > 0.2 and amount["status"] == "drift"
    plots = {p["name"]: p for p in b["latest_plots"]}
    assert len(plots["amount"]["edges"]) == len(plots["amount"]["current"]) + 1
    limited = dash.get(f"/api/v1/monitoring/{MODEL}/drift?limit=1", dash.seeded.viewer).json()
    assert all(len(s["reports"]) == 1 for s in limited["sites"])
    assert dash.get("/api/v1/monitoring", dash.seeded.viewer).json() == {"models": [MODEL]}


def test_quality_route_scores_each_site_against_its_bound(dash: Dashboard) -> None:
    body = dash.get(f"/api/v1/monitoring/{MODEL}/quality", dash.seeded.viewer).json()
    assert body["metric"] == "accuracy" and body["bound"] == 0.8
    by_site: dict[str, list[float]] = {}
    for point in body["points"]:
        by_site.setdefault(point["site"], []).append(point["value"])
    assert len(by_site["edge-a"]) == 3 and min(by_site["edge-a"]) > 0.85
    assert max(by_site["edge-b"]) < 0.7
    bad = dash.get(f"/api/v1/monitoring/{MODEL}/quality?since=soon", dash.seeded.viewer)
    assert bad.status_code == 400 and "duration" in bad.json()["error"]


def test_journal_route_reads_newest_first_by_family_and_pages_back(dash: Dashboard) -> None:
    token = dash.seeded.viewer
    everything = dash.get("/api/v1/journal?limit=1000", token).json()
    seqs = [e["seq"] for e in everything["entries"]]
    assert seqs == sorted(seqs, reverse=True) and seqs[0] == everything["last_seq"]
    types = {e["type"] for e in everything["entries"]}
    assert {"object.replicated", "run.succeeded", "model.registered", "drift.detected"} <= types
    assert {"rollout.started", "rollout.halted", "site.joined"} <= types
    rollouts = dash.get("/api/v1/journal?type=rollout.*&type=drift.detected", token).json()
    assert {e["type"] for e in rollouts["entries"]} >= {"rollout.halted", "drift.detected"}
    assert all(
        e["type"].startswith("rollout.") or e["type"] == "drift.detected"
        for e in rollouts["entries"]
    )
    first = dash.get("/api/v1/journal?limit=2", token).json()
    older = dash.get(f"/api/v1/journal?limit=2&before={first['next_before']}", token).json()
    assert [e["seq"] for e in first["entries"] + older["entries"]] == seqs[:4]


def test_journal_route_cuts_oversized_event_data(dash: Dashboard) -> None:
    dash.plane.service.events.emit(  # type: ignore[union-attr]
        Event(id="big-one", type="test.big", site="core", subject="s", data={"blob": "x" * 9000})
    )
    body = dash.get("/api/v1/journal?type=test.big", dash.seeded.viewer).json()
    assert body["entries"][0]["data"] == {"truncated": True, "keys": ["blob"]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/registry/models",
        f"/api/v1/registry/models/{MODEL}",
        "/api/v1/journal",
        "/api/v1/monitoring",
        f"/api/v1/monitoring/{MODEL}/drift",
        f"/api/v1/monitoring/{MODEL}/quality",
    ],
)
def test_readers_may_read_agents_and_strangers_may_not(dash: Dashboard, path: str) -> None:
    assert dash.get(path, dash.seeded.viewer).status_code == 200
    assert dash.get(path, dash.seeded.admin).status_code == 200
    assert dash.get(path, dash.seeded.agent).status_code == 403
    assert dash.get(path, None).status_code == 401
    assert dash.get(path, "elt_garbage").status_code == 401
    assert dash.get(path, dash.seeded.viewer).headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/ui/", "/ui/app.js", "/ui/app.css"])
def test_pages_carry_a_strict_csp_and_no_data_or_secret(dash: Dashboard, path: str) -> None:
    response = dash.http.get(path)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    text = response.text
    for secret in (dash.seeded.admin, dash.seeded.viewer, dash.seeded.agent):
        assert secret not in text
    assert "edge-a" not in text and "run-0002" not in text  # the pages carry no data


def test_page_has_no_inline_script_or_style_and_nothing_from_elsewhere() -> None:
    static = Path(__file__).resolve().parents[2] / "src" / "edgeloop" / "dashboard" / "static"
    html = (static / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="app.js" defer>']
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html, re.IGNORECASE)  # no handler attributes
    script = (static / "app.js").read_text()
    assert "innerHTML" not in script and "outerHTML" not in script
    assert "insertAdjacentHTML" not in script and "eval(" not in script
    assert "localStorage" not in script  # the token lives in sessionStorage only
    for text in (html, script, (static / "app.css").read_text()):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_root_and_bare_ui_redirect_to_the_dashboard(dash: Dashboard) -> None:
    for path in ("/", "/ui"):
        response = dash.http.get(path, follow_redirects=False)
        assert response.status_code == 307 and response.headers["location"] == "/ui/"
    assert dash.http.get("/ui/../api/v1/sites").status_code == 401  # no way around auth


def test_control_plane_without_workspace_has_an_empty_models_page(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        viewer = fleet.token("viewer")
        assert fleet.call("GET", "/api/v1/registry/models", viewer).json() == {
            "available": False,
            "models": [],
        }
        missing = fleet.call("GET", "/api/v1/registry/models/churn", viewer)
        assert missing.status_code == 404 and "no model registry" in missing.json()["error"]
        assert fleet.call("GET", "/api/v1/monitoring/churn/drift", viewer).json() == {
            "model": "churn",
            "sites": [],
        }
    finally:
        fleet.http.close()
        fleet.plane.engine.dispose()
        fleet.journal.close()

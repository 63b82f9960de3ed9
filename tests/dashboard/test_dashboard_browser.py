"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright)
against a real control plane on loopback, with data seeded through the real APIs.

Screenshots of every page go to test-artifacts/dashboard/ at the repository root.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_seed import HOSTILE, MODEL, Seeded, make_workspace, seed_fleet, seed_workspace
from dashboard_seed import settings_for as dashboard_settings

from edgeloop.fleet.auth import read_secret_file
from edgeloop.fleet.embedded import ControlPlaneThread
from edgeloop.testing.serving import free_port

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"


def chromium_path() -> str:
    """The system Chromium; a clear failure (not a skip) when it is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "the browser tests need Debian's `chromium`: run `make system-deps` as root "
            "(or `apt-get install chromium`)",
            pytrace=False,
        )
    return path


@dataclass
class Live:
    url: str
    seeded: Seeded
    browser: Any


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright: pip install -e '.[dev]'", pytrace=False)
    tmp = tmp_path_factory.mktemp("dash-live")
    ws = make_workspace(tmp / "ws")
    seed_workspace(ws, tmp)
    settings = dashboard_settings(ws)
    server = ControlPlaneThread(settings, host="127.0.0.1", port=free_port())
    plane = server.start()
    try:
        with httpx.Client(timeout=30) as http:
            admin = read_secret_file(settings.admin_token_path)
            seeded = seed_fleet(http, server.url, admin, plane.service.tick)
        with sync_playwright() as pw:
            # --no-sandbox: CI runs the tests as root, where Chromium's sandbox cannot start.
            browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                yield Live(server.url, seeded, browser)
            finally:
                browser.close()
    finally:
        server.stop()


@pytest.fixture
def page(live: Live) -> Iterator[Any]:
    """A fresh browser context (its own session storage) that fails the test on any script
    error or Content-Security-Policy violation."""
    context = live.browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "401" not in msg.text and "403" not in msg.text
            else None
        ),
    )
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert problems == [], problems


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def sign_in(page: Any, live: Live, token: str) -> None:
    page.goto(f"{live.url}/ui/")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")


def test_bad_and_agent_tokens_are_refused_at_sign_in(page: Any, live: Live) -> None:
    sign_in(page, live, "elt_not-a-real-token")
    error = page.locator("#login-error")
    error.wait_for(state="visible")
    assert "Sign-in refused" in error.inner_text()
    assert page.locator("#main").is_hidden()
    shot(page, "login-refused")
    page.fill("#token", live.seeded.agent)
    page.click("#login-form button[type=submit]")
    # (Locator waits, not wait_for_function: the page's CSP rightly forbids eval.)
    page.locator("#login-error", has_text="cannot use the dashboard").wait_for()
    assert page.evaluate("sessionStorage.length") == 0


def test_admin_sees_every_page(page: Any, live: Live) -> None:
    seeded = live.seeded
    sign_in(page, live, seeded.admin)

    # Fleet: sites with health, loaded versions, backlog and capture drops.
    page.wait_for_selector("#sites tr[data-site='edge-b']")
    row_a = page.locator("#sites tr[data-site='edge-a']").inner_text()
    row_b = page.locator("#sites tr[data-site='edge-b']").inner_text()
    assert "healthy" in row_a and f"{MODEL}:1" in row_a and "ring=canary" in row_a
    assert re.search(r"\b3\b", row_a)  # replication backlog
    assert "2" in row_b.split("\t")[6]  # capture drops column
    assert page.locator(".tiles").inner_text().count("\n") >= 6
    # The token is in this tab's session storage only, never in the address or elsewhere.
    assert seeded.admin not in page.url
    assert page.evaluate("sessionStorage.getItem('edgeloop.token')") == seeded.admin
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    shot(page, "fleet")

    # Models: the list, then one model's versions, lineage graph and card.
    page.click("nav a[data-page=models]")
    page.wait_for_selector(f"tr[data-model='{MODEL}']")
    assert "champion → 1" in page.locator(f"tr[data-model='{MODEL}']").inner_text()
    shot(page, "models")
    page.click(f"tr[data-model='{MODEL}'] a")
    page.wait_for_selector("svg.lineage")
    for node in ("site:edge-a", "site:edge-b", "dataset:snap-2", "run:run-0002", "version:2"):
        assert page.locator(f"svg.lineage [data-node='{node}']").count() == 1, node
    assert page.locator("tr[data-version='2']").inner_text().count("0.94") == 1
    # The card holds markup; it shows as text and none of it ran.
    page.locator("svg.lineage [data-node='version:2']").click()
    page.wait_for_selector("tr[data-version='2'].selected")
    assert HOSTILE in page.locator("dl.kv").first.inner_text()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    shot(page, "model-lineage")

    # Rollouts: the halted one, then its waves.
    page.click("nav a[data-page=rollouts]")
    row = page.locator(f"tr[data-rollout='{seeded.rollout}']")
    row.wait_for()
    assert "halted" in row.inner_text() and "1 → 2" in row.inner_text()
    assert "halted by their health gate" in page.locator("p.alert").inner_text()
    shot(page, "rollouts")
    row.locator("a").click()
    page.wait_for_selector(f"tr[data-site='{seeded.halted_site}']")
    assert "gate failed" in page.locator(f"tr[data-site='{seeded.halted_site}']").inner_text()
    assert "halted:" in page.locator("p.alert").inner_text()
    shot(page, "rollout-halted")

    # Drift and quality per site.
    page.click("nav a[data-page=monitoring]")
    card_b = page.locator("section.site-monitoring[data-site='edge-b']")
    card_b.wait_for()
    assert "drift" in card_b.locator("h2").inner_text()
    assert "amount" in card_b.locator(".drifted").inner_text()
    assert card_b.locator("svg.chart").count() >= 3  # PSI, histograms, quality
    assert card_b.locator("svg line.mark").count() >= 1  # a window that drifted
    assert card_b.locator("svg line.bound").count() == 1  # the quality bound
    card_a = page.locator("section.site-monitoring[data-site='edge-a']")
    assert "no drift" in card_a.locator("h2").inner_text()
    shot(page, "drift-quality")

    # The loop timeline, newest first, with a lane per kind of event.
    page.click("nav a[data-page=timeline]")
    page.wait_for_selector("#timeline tr[data-type='rollout.halted']")
    rows = page.locator("#timeline tbody tr")
    types = set(rows.evaluate_all("rs => rs.map(r => r.dataset.type)"))
    assert {"object.replicated", "run.succeeded", "model.registered", "drift.detected"} <= types
    assert page.locator("svg.swimlanes circle").count() == rows.count()
    shot(page, "timeline")
    page.uncheck("input[data-family=replication]")
    page.locator("#timeline tr[data-type='object.replicated']").first.wait_for(state="detached")
    assert page.locator("#timeline tr[data-type='model.registered']").count() == 2

    # The audit log: the seeding calls, newest first.
    page.click("nav a[data-page=audit]")
    page.wait_for_selector("#audit tbody tr")
    audit = page.locator("#audit").inner_text()
    assert "POST /api/v1/rollouts" in audit and "PUT /api/v1/deployments/churn" in audit
    shot(page, "audit")

    # Signing out forgets the token.
    page.click("#logout")
    page.locator("#login").wait_for(state="visible")
    assert page.evaluate("sessionStorage.length") == 0


def test_viewer_reads_the_fleet_but_not_the_audit_log(page: Any, live: Live) -> None:
    sign_in(page, live, live.seeded.viewer)
    page.wait_for_selector("#sites tr[data-site='edge-a']")
    assert "wall-screen (viewer" in page.locator("#who-name").inner_text()
    page.click("nav a[data-page=audit]")
    page.wait_for_selector("text=The audit log is for admins")
    assert page.locator("#audit").count() == 0


def test_revoked_token_signs_the_page_out(page: Any, live: Live) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {live.seeded.admin}"}
        made = http.post(
            "/api/v1/tokens", json={"name": "short", "role": "viewer"}, headers=headers
        ).json()
        sign_in(page, live, made["token"])
        page.wait_for_selector("#sites tr[data-site='edge-a']")
        assert http.delete(f"/api/v1/tokens/{made['id']}", headers=headers).status_code == 200
    page.click("nav a[data-page=rollouts]")
    page.locator("#login-error").wait_for(state="visible")
    assert "Signed out" in page.locator("#login-error").inner_text()
    assert page.evaluate("sessionStorage.length") == 0

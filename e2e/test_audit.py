"""The Audit log page in real Chromium against a real ``switchboard serve``: a source and a
Webhooks destination are added, a setting changed and the destination switched on through the
web app; the Audit log page then shows each change (with the sign-in before them), who made it
and from where, and the shared secret appears nowhere on it. The screenshot goes to
test-artifacts/screenshots/audit.png (docs/screenshots/ holds the committed copy for the README).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "e2e-audit-password-1"
SECRET = "audit-e2e-shared-secret-9"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}"
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_ADMIN_PASSWORD": PASSWORD}
    subprocess.run([sys.executable, "-m", "server.cli", "init"], env=env, cwd=ROOT, capture_output=True, check=True)
    live = LiveServer(url, SWITCHBOARD_ADMIN_PASSWORD=PASSWORD).start()
    yield live
    live.stop()


def test_the_audit_page_shows_each_change_made_in_the_web_app(server, page: Page):
    base = server.url
    page.goto(base + "/sources")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/sources")

    page.get_by_label("Name").fill("Audit shop")
    page.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("heading", name="Audit shop")).to_be_visible()
    page.get_by_role("link", name="Add destination").click()
    page.get_by_label("Search by name").fill("webhooks")
    page.locator("#catalog-tiles").get_by_role("link", name=re.compile("Webhooks")).click()
    page.locator("#configure").click()
    page.get_by_label("Webhook URL (required)").fill("https://hooks.example.com/first")
    page.get_by_label("Shared secret").fill(SECRET)
    page.get_by_role("button", name="Save").click()
    page.get_by_label("Webhook URL (required)").fill("https://hooks.example.com/second")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("Settings saved")
    page.get_by_role("switch", name="Enable").click()
    expect(page.get_by_role("switch", name="Enable")).to_have_attribute("aria-checked", "true")

    page.get_by_role("link", name="Audit log").click()
    expect(page).to_have_url(base + "/audit")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(5)
    expected = [  # newest first
        ("destination.update", "enabled: False → True"),
        ("destination.update", "settings.url: https://hooks.example.com/first → https://hooks.example.com/second"),
        ("destination.create", "settings.shared_secret: — → ********"),
        ("source.create", "name: — → Audit shop"),
        ("sign_in", "user:admin"),
    ]
    for n, (action, text) in enumerate(expected):
        expect(rows.nth(n)).to_contain_text(action)
        expect(rows.nth(n)).to_contain_text(text)
        expect(rows.nth(n)).to_contain_text("127.0.0.1")
        expect(rows.nth(n)).to_contain_text("Chrome")
    for n in range(4):
        expect(rows.nth(n).locator("td").nth(1)).to_have_text("admin")
    assert SECRET not in page.content()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "audit.png"), full_page=True)

    # The filters narrow the same page.
    page.get_by_label("Action").fill("destination.update")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    page.get_by_label("Subject").select_option("source")
    page.get_by_label("Action").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("source.create")

    # Like every page, it fits a phone screen.
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(base + "/audit")
    expect(rows).to_have_count(5)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"/audit scrolls sideways by {overflow}px at 390px"

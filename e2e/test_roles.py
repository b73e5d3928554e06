"""Roles in real Chromium against a real ``switchboard serve`` (issue #17): an editor signs in and
adds a Webhooks destination with a shared secret; a viewer sees the destination but not the
secret, finds the form disabled, and a save posted anyway is refused with a message. The owner's
Users and Tokens pages are screenshotted for the README (test-artifacts/screenshots/; committed
copies in docs/screenshots/).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from server.demo import seed_demo
from server.store import open_store, workspace

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "e2e-owner-password-1"
SECRET = "whsec-e2e-do-not-show-7f3a"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import os

    url = f"sqlite:///{tmp_path_factory.mktemp('roles') / 'roles.db'}"
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_ADMIN_PASSWORD": PASSWORD}
    subprocess.run([sys.executable, "-m", "server.cli", "init"], env=env, cwd=ROOT, capture_output=True, check=True)
    for name, role in (("edith", "editor"), ("victor", "viewer")):
        subprocess.run([sys.executable, "-m", "server.cli", "users", "add", name, "--role", role, "--password-stdin"],
                       env=env, cwd=ROOT, input=f"pass-{name}-123\n", text=True, capture_output=True, check=True)
    engine = open_store(url)
    seed_demo(engine)
    engine.dispose()
    live = LiveServer(url, SWITCHBOARD_ADMIN_PASSWORD=PASSWORD, SWITCHBOARD_ALLOW_PRIVATE_EGRESS="true").start()
    live.database_url = url
    yield live
    live.stop()


def sign_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(base + "/sign-in")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/sources")


def test_editor_adds_a_destination_and_a_viewer_sees_it_without_secrets_and_cannot_save(server, browser: Browser):
    base = server.url
    editor = browser.new_context().new_page()
    sign_in(editor, base, "edith", "pass-edith-123")
    expect(editor.locator(".who")).to_contain_text("editor")
    editor.goto(base + "/catalog/webhooks")
    editor.locator("#configure").click()
    editor.get_by_label("Demo site").check()
    editor.get_by_role("button", name="Next: settings").click()
    editor.get_by_label(re.compile("^Webhook URL")).fill("http://127.0.0.1:9/hook")
    editor.get_by_label(re.compile("^Shared secret")).fill(SECRET)
    editor.get_by_role("button", name="Save").click()
    expect(editor.get_by_role("status")).to_contain_text("turn on Enable")
    dest_url = editor.url
    assert re.search(r"/destinations/\d+$", dest_url), dest_url

    viewer = browser.new_context().new_page()
    sign_in(viewer, base, "victor", "pass-victor-123")
    expect(viewer.locator(".viewer-note")).to_contain_text("change nothing")
    expect(viewer.get_by_role("link", name="Users")).to_have_count(0)
    viewer.goto(dest_url)
    expect(viewer.get_by_role("heading", level=1)).to_contain_text("Webhooks")
    expect(viewer.get_by_label(re.compile("^Webhook URL"))).to_have_value("http://127.0.0.1:9/hook")
    assert SECRET not in viewer.content()
    assert SECRET not in viewer.request.get(dest_url, params={"format": "json"}).text()
    save = viewer.locator('form[action$="/settings"] button[type=submit]').first
    expect(save).to_be_disabled()
    # Posted anyway (a crafted request, or a page opened before the role changed): refused.
    viewer.get_by_label(re.compile("^Webhook URL")).evaluate("el => { el.disabled = false; el.value = 'http://127.0.0.1:9/evil'; }")
    viewer.locator('form[action$="/settings"]').evaluate("form => form.submit()")
    expect(viewer.get_by_role("heading", level=1)).to_contain_text("403")
    expect(viewer.locator("main")).to_contain_text("you are signed in as a viewer")

    engine = open_store(server.database_url)
    try:
        (dest,) = [d for d in workspace.list_destinations(engine, 1) if d["slug"] == "webhooks"]
        assert dest["settings"]["url"] == "http://127.0.0.1:9/hook" and dest["settings"]["shared_secret"] == SECRET
    finally:
        engine.dispose()


def test_owner_manages_users_and_tokens(server, page: Page):
    base = server.url
    sign_in(page, base, "admin", PASSWORD)
    page.get_by_role("link", name="Users").click()
    expect(page.locator("#users")).to_contain_text("victor")
    page.get_by_label("Username").fill("nora")
    page.get_by_label(re.compile("^Password")).fill("pass-nora-123")
    page.get_by_label("Role", exact=True).select_option("editor")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("status")).to_contain_text("Created nora (editor)")
    shot(page, "users")

    page.get_by_role("link", name="Tokens").click()
    page.get_by_label("Name").fill("grafana")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#token-value").inner_text()
    assert token.startswith("sb_")
    expect(page.locator("#tokens")).to_contain_text("grafana")
    shot(page, "tokens")
    assert page.request.get(base + "/api/v1/sources", headers={"Authorization": f"Bearer {token}"}).ok
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('tr[data-token="grafana"]').get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text("Token revoked")
    assert page.request.get(base + "/api/v1/sources", headers={"Authorization": f"Bearer {token}"}).status == 401

"""The web app's completed parts in real Chromium against a real ``switchboard serve``: secrets
survive a settings-form error, catalog search by alias, source settings (rename, volume chart,
delete with the name typed), a dead letter's own page, the API docs under the CSP, and the
debugger's detail pane on a 375 px phone.

Screenshots go to test-artifacts/screenshots/ (docs/screenshots/ holds the committed copies that
the README shows), at 1280 px and 375 px.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import insert

from server.store import delivery as store
from server.store import open_store, workspace
from server.store.delivery import delivery_attempts, delivery_jobs, utcnow, write_transaction
from server.store.events import events

from test_webapp import SHOTS, no_policy_violations, server, shot, sign_in  # noqa: F401  (fixtures)

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}


def _engine(server):
    return open_store(server.env["SWITCHBOARD_DATABASE_URL"])


def test_secrets_survive_a_form_error_in_chromium(server, page: Page):
    base = server.url
    sign_in(page, base, "/catalog/webhooks/configure?source=1")
    page.get_by_label("Webhook URL").fill("not a url")
    page.locator("input[name=shared_secret]").fill("typed-in-chromium-secret")
    page.locator("input[name='headers.k']").first.fill("Authorization")
    page.locator("input[name='headers.v']").first.fill("Bearer chromium-header-token")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(page.locator("input[name=shared_secret]")).to_have_value("typed-in-chromium-secret")
    expect(page.locator("input[name='headers.v']").first).to_have_value("Bearer chromium-header-token")
    page.get_by_label("Webhook URL").fill("https://example.com/hook")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/destinations/\d+$"))
    dest_id = int(page.url.rsplit("/", 1)[1])
    engine = _engine(server)
    settings = workspace.get_destination(engine, dest_id)["settings"]
    engine.dispose()
    assert settings["shared_secret"] == "typed-in-chromium-secret"
    assert settings["headers"] == {"Authorization": "Bearer chromium-header-token"}
    assert "typed-in-chromium-secret" not in page.content()


def test_catalog_search_finds_destinations_by_their_other_names(server, page: Page):
    sign_in(page, server.url, "/catalog")
    for query, name in (("Facebook", "Meta Pixel"), ("GA4", "Google Analytics 4")):
        page.get_by_label("Search by name").fill(query)
        expect(page.locator("#catalog-tiles .tile:visible .tile-name")).to_contain_text([name])


def test_source_settings_volume_chart_and_delete(server, page: Page):
    base = server.url
    engine = _engine(server)
    source = workspace.create_source(engine, "Volume shop")
    now = utcnow()
    with write_transaction(engine) as conn:
        conn.execute(insert(events), [
            {"source_id": source["id"], "message_id": f"v-{i}", "type": ("track", "page", "identify")[i % 3],
             "received_at": now - timedelta(hours=(i * 7) % 160), "payload": "{}"} for i in range(120)])
    engine.dispose()
    sign_in(page, base, f"/sources/{source['id']}/settings")
    expect(page.locator("#volume-total")).to_have_text("120")
    expect(page.locator("#volume-chart rect")).not_to_have_count(0)
    for size, name in ((DESKTOP, "source-settings"), (PHONE, "source-settings-phone")):
        page.set_viewport_size(size)
        page.reload()
        shot(page, name)
    page.set_viewport_size(DESKTOP)
    page.get_by_role("textbox", name="Name", exact=True).fill("Volume shop renamed")
    page.get_by_role("button", name="Rename").click()
    expect(page.locator(".flash")).to_contain_text("Renamed the source to Volume shop renamed")
    button = page.get_by_role("button", name="Delete Volume shop renamed")
    expect(button).to_be_disabled()
    page.get_by_label(re.compile("to confirm")).fill("Volume shop renamed")
    expect(button).to_be_enabled()
    button.click()
    expect(page).to_have_url(base + "/sources")
    expect(page.locator(".flash")).to_contain_text("Deleted the source Volume shop renamed")


def test_a_dead_letter_opens_on_its_own_page(server, page: Page):
    base = server.url
    sign_in(page, base, "/catalog/webhooks/configure?source=1")
    page.get_by_label("Webhook URL").fill("https://example.com/hook")
    page.locator("input[name=shared_secret]").fill("dead-letter-page-secret")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/destinations/\d+$"))
    dest_id = int(page.url.rsplit("/", 1)[1])
    engine = _engine(server)
    now = utcnow()
    with write_transaction(engine) as conn:
        event_id = conn.execute(insert(events).values(
            source_id=1, message_id="dl-e2e", type="track", received_at=now,
            payload='{"type": "track", "event": "Order Completed", "userId": "u-1"}')).inserted_primary_key[0]
        job_id = conn.execute(insert(delivery_jobs).values(
            destination_id=dest_id, source_id=1, event_id=event_id, message_id="dl-e2e", event_type="track",
            received_at=now, created_at=now, status=store.DEAD, attempts=1, next_attempt_at=now, finished_at=now,
            last_status=410, last_error="HTTP 410")).inserted_primary_key[0]
        conn.execute(insert(delivery_attempts).values(
            job_id=job_id, destination_id=dest_id, at=now, outcome=store.DEAD, status=410, error="HTTP 410",
            latency_ms=9.0, response='{"error": "gone, key dead-letter-page-secret"}',
            request='{"method": "POST", "url": "https://example.com/hook", "headers": {"X-Signature": "sha256=ab"},'
                    ' "body": "{\\"event\\": \\"Order Completed\\"}"}'))
    engine.dispose()
    page.reload()
    page.locator("#dead-letters a", has_text="dl-e2e").click()
    expect(page).to_have_url(f"{base}/destinations/{dest_id}/dead-letters/{job_id}")
    expect(page.locator("#dead-letter-error")).to_have_text("HTTP 410")
    expect(page.locator("#dead-letter-response")).to_contain_text("********")
    assert "dead-letter-page-secret" not in page.content()
    shot(page, "dead-letter")
    page.set_viewport_size(PHONE)
    page.reload()
    shot(page, "dead-letter-phone")


def test_api_docs_render_under_the_csp(server, page: Page):
    base = server.url
    response = httpx.get(base + "/api/docs", follow_redirects=False)
    assert response.status_code == 303 and "/sign-in" in response.headers["location"]
    sign_in(page, base, "/api/docs")
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible(timeout=15000)
    expect(page.locator("#swagger-ui")).to_contain_text("/api/v1/sources")
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / "api-docs.png"))  # the first screen: the reference is long
    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible(timeout=15000)
    page.screenshot(path=str(SHOTS / "api-docs-phone.png"))


def test_debugger_detail_is_in_view_on_a_375_px_phone(server, page: Page):
    base = server.url
    engine = _engine(server)
    source = workspace.create_source(engine, "Phone debugger")
    engine.dispose()
    page.set_viewport_size(PHONE)
    sign_in(page, base, f"/sources/{source['id']}/debugger")
    expect(page.locator("#debugger-empty")).to_be_visible()
    expect(page.locator("#debugger-empty")).to_contain_text("No events yet")
    shot(page, "debugger-empty-phone")
    for i in range(12):
        r = httpx.post(base + "/v1/track", json={"writeKey": source["write_key"], "event": f"Phone {i}",
                                                 "anonymousId": "a-1"})
        assert r.status_code == 200
    rows = page.locator("#event-rows tr")
    expect(rows).to_have_count(12)
    expect(page.locator("#debugger-empty")).to_be_hidden()
    rows.last.scroll_into_view_if_needed()
    rows.last.click()
    expect(page.locator("#event-json")).to_contain_text('"event": "Phone 0"')
    top = page.evaluate("document.getElementById('event-detail').getBoundingClientRect().top")
    assert -1 <= top < PHONE["height"] / 2, f"the detail pane starts {top}px from the top of the screen"
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the debugger scrolls sideways by {overflow}px"
    shot(page, "debugger-phone")


def test_a_submitted_form_shows_its_busy_state(server, page: Page):
    sign_in(page, server.url, "/catalog/webhooks/configure?source=1")
    # Record the button's state when it changes (read after the next page arrives).
    page.evaluate("""() => {
      const b = document.querySelector('form.settings button[type=submit]');
      new MutationObserver(() => localStorage.setItem('busy', JSON.stringify([b.disabled, b.textContent])))
        .observe(b, {attributes: true, childList: true, characterData: true, subtree: true});
    }""")

    def slow(route):
        time.sleep(0.5)  # the server's answer comes late: the button must say so meanwhile
        route.continue_()

    page.route("**/catalog/webhooks/configure", slow)
    page.get_by_label("Webhook URL").fill("https://example.com/busy")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/destinations/\d+$"))
    assert page.evaluate("localStorage.getItem('busy')") == '[true,"Saving…"]'

"""The web app in real Chromium against a real ``switchboard serve``: sign-in, the catalog and
the add-destination flow to a working GA4 loader on the demo page, validation, secrets, the
debugger, a failing webhook's dead letters and Replay, rollback, the sign-in guard and CSRF.

Screenshots of the catalog, the settings form, the debugger and the delivery overview go to
test-artifacts/screenshots/ (docs/screenshots/ holds committed copies for the README).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from server.demo import seed_demo
from server.store import open_store

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "e2e-admin-password-1"
MEASUREMENT_ID = "G-E2ETEST1"
GTAG_STUB = "window.__gtagLoaded = (window.__gtagLoaded || 0) + 1;"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh database prepared the way a user does it (``switchboard init``), then served.

    One server for the module (start-up is the slow part); each test uses its own source or
    makes no assumption about what earlier tests added.
    """
    url = f"sqlite:///{tmp_path_factory.mktemp('webapp') / 'web.db'}"
    env = {**_env(), "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_ADMIN_PASSWORD": PASSWORD}
    init = subprocess.run([sys.executable, "-m", "server.cli", "init"], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert f"Admin user: admin / password: {PASSWORD}" in init.stdout
    engine = open_store(url)
    seed_demo(engine)  # what `make run` does on an empty database: the "Demo site" source
    engine.dispose()
    live = LiveServer(url, SWITCHBOARD_ADMIN_PASSWORD=PASSWORD, SWITCHBOARD_BUNDLE_MAX_AGE="0",
                      SWITCHBOARD_DEMO="true").start()  # /demo, as `make run` (serve --demo) serves it
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def no_policy_violations(request):
    """Every page a test opens runs under the web app's Content-Security-Policy: anything it
    blocks (an inline script, style or handler) is a console error here, and fails the test."""
    if "page" not in request.fixturenames:
        yield
        return
    page: Page = request.getfixturevalue("page")
    blocked: list[str] = []
    page.on("console", lambda msg: blocked.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text else None)
    yield
    assert not blocked, f"the CSP blocked something: {blocked}"


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def sign_in(page: Page, base: str, then: str = "/sources") -> None:
    page.goto(base + then)
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + then)


def page_json(page: Page, url: str) -> dict:
    response = page.request.get(url, params={"format": "json"})
    assert response.ok, (url, response.status)
    return response.json()


def bundle_text(page: Page, base: str) -> str:
    info = page_json(page, base + "/sources/1")["bundle"]
    return page.request.get(info["url"], headers={"Cache-Control": "no-cache"}).text()


def test_new_user_adds_ga4_to_the_demo_site_and_the_demo_page_loads_it(server, page: Page):
    base = server.url
    sign_in(page, base)

    # Catalog: search as you type, then the tile.
    page.get_by_role("link", name="Catalog").click()
    expect(page.locator("#catalog-tiles .tile")).to_have_count(14)
    shot(page, "catalog")
    page.get_by_label("Search by name").press_sequentially("goo")
    expect(page.locator("#catalog-tiles .tile:visible")).to_have_count(2)  # GA4 and Google Tag Manager
    page.get_by_label("Category").select_option("Analytics")
    expect(page.locator("#catalog-tiles .tile:visible")).to_have_count(1)
    page.locator("#catalog-tiles").get_by_role("link", name=re.compile("Google Analytics 4")).click()

    # Summary page → Configure → choose the source → settings form.
    expect(page.get_by_role("heading", name="Google Analytics 4", level=1)).to_be_visible()
    expect(page.get_by_text("remove it", exact=False)).to_be_visible()
    page.locator("#configure").click()
    page.get_by_label("Demo site").check()
    page.get_by_role("button", name="Next: settings").click()
    expect(page.get_by_role("heading", name="Set up Google Analytics 4 on Demo site")).to_be_visible()

    # A wrong measurement ID: the field's own error, and nothing saved.
    page.get_by_label("Measurement ID (required)").fill("UA-12345")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#setting-measurement_id-error")).to_contain_text("does not look right")
    assert page_json(page, base + "/sources/1")["destinations"] == []
    page.get_by_label("Measurement ID (required)").fill(MEASUREMENT_ID)
    shot(page, "settings-form")
    page.get_by_role("button", name="Save").click()

    # The destination page, switched off until Enable.
    expect(page.get_by_role("status")).to_contain_text("turn on Enable")
    toggle = page.get_by_role("switch", name="Enable")
    expect(toggle).to_have_attribute("aria-checked", "false")
    toggle.click()
    expect(page.get_by_role("switch", name="Enable")).to_have_attribute("aria-checked", "true")
    expect(page.locator(".badge.on")).to_have_text("enabled")

    # The demo page loads a bundle with the GA4 loader; the gtag stub sees config with our ID.
    gtag_requests = []

    def gtag(route):
        gtag_requests.append(route.request.url)
        route.fulfill(body=GTAG_STUB, content_type="application/javascript")

    page.context.route("**/*googletagmanager.com/**", gtag)
    demo = page.context.new_page()
    demo.goto(base + "/demo")
    demo.wait_for_function("window.__gtagLoaded >= 1")
    calls = demo.evaluate("Array.from(window.dataLayer, a => Array.from(a).map(x => typeof x === 'object' ? null : x))")
    assert ["config", MEASUREMENT_ID, None] in calls
    assert gtag_requests == [f"https://www.googletagmanager.com/gtag/js?id={MEASUREMENT_ID}"]
    enabled_version = page_json(page, base + "/sources/1")["source"]["settings_version"]

    # Disabling it in the web app removes it from the next bundle.
    page.get_by_role("switch", name="Enable").click()
    expect(page.get_by_role("switch", name="Enable")).to_have_attribute("aria-checked", "false")
    assert MEASUREMENT_ID not in bundle_text(page, base)
    demo.reload()
    demo.wait_for_function("window.analytics && window.analytics.initialized === true")  # the new bundle ran
    demo.wait_for_load_state("networkidle")
    assert len(gtag_requests) == 1 and demo.evaluate("window.__gtagLoaded === undefined")

    # Rollback in the history restores the earlier bundle (GA4 enabled).
    page.goto(base + "/sources/1/history")
    page.get_by_role("button", name=f"Roll back to v{enabled_version}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Rolled back to version {enabled_version}")
    assert MEASUREMENT_ID in bundle_text(page, base)
    demo.reload()
    demo.wait_for_function("window.__gtagLoaded >= 1")
    assert len(gtag_requests) == 2


def test_debugger_shows_an_event_from_the_demo_page_within_two_seconds(server, page: Page):
    base = server.url
    sign_in(page, base, "/sources/1/debugger")
    expect(page.locator("#stream-status")).to_have_text("Live")
    demo = page.context.new_page()
    demo.goto(base + "/demo")
    demo.wait_for_function("window.analytics && typeof window.analytics.track === 'function'")
    demo.get_by_role("button", name="Track “Product Added”").click()
    clicked = time.monotonic()
    row = page.locator("#event-rows tr", has_text="Product Added")
    expect(row).to_be_visible(timeout=2000)
    assert time.monotonic() - clicked < 2.0

    # Filter by type hides it; text filter finds it again.
    page.get_by_label("Type").select_option("identify")
    expect(row).to_be_hidden()
    page.get_by_label("Type").select_option("")
    page.get_by_label("Filter").fill("product added")
    expect(row).to_be_visible()
    page.get_by_label("Filter").fill("")

    # Pause holds new events; resume shows them.
    page.get_by_role("button", name="Pause").click()
    demo.get_by_role("button", name="Identify as demo-user").click()
    expect(page.locator("#stream-status")).to_contain_text("1 new event(s) held", timeout=3000)
    expect(page.locator("#event-rows tr[data-type=identify]")).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#event-rows tr[data-type=identify]")).to_have_count(1)

    # Full JSON and routing, by keyboard.
    row.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#event-json")).to_contain_text('"event": "Product Added"')
    expect(page.locator("#event-detail h3").first).to_have_text("Routed to")
    shot(page, "debugger")


class Receiver:
    """A webhook endpoint on loopback: /broken answers 410 Gone, anything else 200 and is recorded."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/broken":
                    self.send_response(410)
                    self.end_headers()
                    self.wfile.write(b'{"error": "this hook was removed"}')
                    return
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_failing_webhook_shows_dead_letters_and_replay_delivers_them(server, receiver, page: Page):
    base = server.url
    secret = "hush-shared-secret-42"
    sign_in(page, base)
    page.get_by_label("Name").fill("Webhook shop")
    page.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("heading", name="Webhook shop")).to_be_visible()
    source_url = page.url
    page.get_by_role("link", name="Add destination").click()
    page.get_by_label("Search by name").fill("webhooks")
    page.locator("#catalog-tiles").get_by_role("link", name=re.compile("Webhooks")).click()
    page.locator("#configure").click()
    page.get_by_label("Webhook URL (required)").fill(receiver.url + "/broken")
    page.get_by_label("Shared secret").fill(secret)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("switch", name="Enable").click()
    expect(page.get_by_role("switch", name="Enable")).to_have_attribute("aria-checked", "true")
    assert secret not in page.content()
    dest_url = page.url

    key = page_json(page, source_url)["source"]["write_key"]
    for n in range(3):
        sent = httpx.post(base + "/v1/track", json={"writeKey": key, "event": f"Webhook Test {n}", "userId": "u-1"})
        assert sent.status_code == 200

    # 410 is permanent: three dead letters, with the vendor's response shown.
    deadline = time.monotonic() + 15
    while page_json(page, dest_url)["delivery"]["counts"]["dead"] < 3:
        assert time.monotonic() < deadline, "the failures never became dead letters"
        time.sleep(0.3)
    page.reload()
    expect(page.locator("#count-dead")).to_have_text("3")
    expect(page.locator("#recent-failures")).to_contain_text("this hook was removed")
    expect(page.locator("#dead-letters tbody tr")).to_have_count(3)
    page.locator("#delivery").scroll_into_view_if_needed()
    shot(page, "delivery-overview")
    assert secret not in page.content()

    # Fix the URL, then Replay: all three arrive.
    page.get_by_label("Webhook URL (required)").fill(receiver.url + "/hook")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("Settings saved")
    page.get_by_role("button", name="Replay 3 dead letters").click()
    expect(page.get_by_role("status")).to_contain_text("Queued 3 dead letters again")
    deadline = time.monotonic() + 15
    while len(receiver.received) < 3:
        assert time.monotonic() < deadline, "replayed events never arrived"
        time.sleep(0.2)
    assert sorted(e["event"] for e in receiver.received) == [f"Webhook Test {n}" for n in range(3)]
    while page_json(page, dest_url)["delivery"]["counts"]["delivered"] < 3:  # results are written in batches
        assert time.monotonic() < deadline, "the deliveries were never recorded"
        time.sleep(0.2)
    page.reload()
    expect(page.locator("#count-delivered")).to_have_text("3")
    expect(page.locator("#count-dead")).to_have_text("0")

    # The Event Tester shows the request and the vendor's response.
    page.get_by_label("Event type").select_option("identify")
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#test-result")).to_contain_text("HTTP 200")
    expect(page.locator("#test-result")).to_contain_text(receiver.url + "/hook")
    assert receiver.received[-1]["type"] == "identify"
    assert secret not in page.content()


def test_signed_out_pages_redirect_to_sign_in_and_forms_need_the_csrf_token(server, page: Page):
    base = server.url
    # Every page of the web plane, signed out (ids that exist, so only the guard can refuse).
    for path in ("/", "/sources", "/sources/1", "/sources/1/history", "/sources/1/history/diff?a=1&b=1",
                 "/sources/1/debugger", "/sources/1/debugger/stream", "/catalog", "/catalog/webhooks",
                 "/catalog/webhooks/configure?source=1"):
        response = page.request.get(base + path, max_redirects=0)
        assert response.status == 303 and response.headers["location"].startswith("/sign-in"), path
    page.goto(base + "/catalog")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/catalog$"))

    sign_in(page, base)
    refused = page.request.post(base + "/sources", form={"name": "No token"}, headers={"Accept": "text/html"})
    assert refused.status == 403 and "CSRF" in refused.text()
    names = [s["name"] for s in page_json(page, base + "/sources")["sources"]]
    assert "No token" not in names
    # The form on the page carries it.
    page.get_by_label("Name").fill("With token")
    page.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("heading", name="With token")).to_be_visible()


def test_pages_fit_a_phone_screen_and_a_1280_px_window(server, page: Page):
    base = server.url
    sign_in(page, base)
    paths = ["/sources", "/sources/1", "/sources/1/history", "/sources/1/debugger", "/catalog",
             "/catalog/google_analytics_4", "/catalog/google_analytics_4/configure?source=1",
             "/catalog/webhooks/configure?source=1"]
    paths += [d["url"] for d in page_json(page, base + "/sources/1")["destinations"]]
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 800})
        for path in paths:
            page.goto(base + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"
            if width == 390 and path.startswith("/destinations/"):
                shot(page, "destination-phone")
    page.goto(base + "/sources/1")
    shot(page, "source-1280")
    # The copy button puts the write key on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page.get_by_role("button", name="Copy the write key").click()
    expect(page.locator(".copied").first).to_have_text("Copied")
    key = page_json(page, base + "/sources/1")["source"]["write_key"]
    assert page.evaluate("navigator.clipboard.readText()") == key

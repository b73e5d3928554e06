"""Issue #15, end to end through the official ``@segment/snippet`` (npm, ``load: false``): a site
calls ``analytics.load(key, {integrations: {...}})``, as Segment's consent managers do, and a
destination turned off there gets nothing:

- device mode: its vendor script is never requested and its stub records no call, while another
  device-mode destination gets the events;
- cloud mode: a loopback webhook receiver gets nothing from the visit that turned Webhooks off
  while it gets the events of a visit that did not; and the warehouse follows the same rule
  (server/rules.py): a visit that turned Warehouse off is not loaded, the others are.
"""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest
from bundle_site import FBQ_STUB, GTAG_STUB
from delivery_vendor import Vendor
from differential_site import SITE, DiffSite, page_html

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)
from server.store import notify, open_store, tokens, workspace


@pytest.fixture(scope="session")
def base_url():
    # pytest-base-url's own fixture is an instance method, which pytest 9 warns about (an error here).
    return None


def visit(browser, site: DiffSite, source: dict, script: str) -> dict[str, list]:
    """One page view in a fresh context: the official snippet, then ``script``; it ends once the
    page's final "__end__" track is stored (its earlier events left before it). Returns the vendor
    script requests and the calls the vendor stubs recorded."""
    write_key = source["write_key"]
    ends = sum(1 for e in site.stored(source["id"]) if e.get("event") == "__end__")
    seen: dict[str, list] = {"gtag": [], "fbq": []}
    context = browser.new_context()
    try:
        context.grant_permissions(["local-network-access"])
        site.routes(context, "ours", page_html(write_key, script))

        def vendor(name, body):
            def handle(route):
                seen[name].append(route.request.url)
                route.fulfill(status=200, body=body, headers={"Content-Type": "application/javascript"})
            return handle

        context.route("https://www.googletagmanager.com/**", vendor("gtag", GTAG_STUB))
        context.route("https://connect.facebook.net/**", vendor("fbq", FBQ_STUB))
        page = context.new_page()
        page.goto(f"{SITE}/diff.html")
        page.wait_for_function("() => window.__done === true", timeout=15000)
        page.wait_for_function("() => (window.__fbq || []).some(function (c) { return c.indexOf('Lead') >= 0; })", timeout=15000)
        deadline = time.monotonic() + 20
        while sum(1 for e in site.stored(source["id"]) if e.get("event") == "__end__") <= ends:
            assert time.monotonic() < deadline, "the visit's events never reached the collector"
            page.wait_for_timeout(50)
        page.wait_for_timeout(200)
        seen["gtag_calls"] = page.evaluate("() => window.__gtag || []")
        seen["fbq_calls"] = page.evaluate("() => window.__fbq || []")
        return seen
    finally:
        context.close()


def track_names(rows) -> list[str]:
    return sorted(r.get("event") for r in rows if r.get("type") == "track" and r.get("event") != "__end__")


def test_a_destination_turned_off_at_load_gets_nothing_in_device_and_cloud_mode(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'snippet.db'}"
    engine = open_store(url)
    # This process adds the destinations after the server's workers found nothing to route to:
    # its bell tells them at once, as the web app's or the CLI's changes do (not their 30 s poll).
    listener = notify.listen(engine)
    warehouse_file = tmp_path / "warehouse.db"
    live = LiveServer(url).start()
    try:
        with Vendor() as hook:
            source = workspace.create_source(engine, "Consent shop")
            add = lambda slug, mode, settings: workspace.add_destination(  # noqa: E731
                engine, source["id"], slug=slug, mode=mode, enabled=True, settings=settings)
            add("google_analytics_4", "device", {"measurement_id": "G-LOADOFF", "api_secret": "s"})
            add("meta_pixel", "device", {"pixel_id": "1234567890", "access_token": "t"})
            add("webhooks", "cloud", {"url": hook.url + "/in"})
            warehouse = add("warehouse", "cloud", {"target": "sqlite", "sqlite_path": str(warehouse_file),
                                                   "sync_interval_seconds": 3600})
            site = DiffSite(browser, engine, live.url)

            # Visit 1: a consent manager turns GA4 and the webhook off at load.
            off = visit(browser, site, source, """
analytics.load(K, {integrations: {"Google Analytics 4": false, "Webhooks": false}});
analytics.page();
analytics.identify("visitor-1", {plan: "pro"});
analytics.track("Lead", {value: 1});
analytics.track("Turned off at load", {n: 1});
done();""")
            # Device mode: GA4's script was never requested and gtag got nothing; Meta Pixel got
            # the same calls (the page waited for its Lead), so the visit did run.
            assert off["gtag"] == [] and off["gtag_calls"] == []
            assert off["fbq"] and any("Lead" in c for c in off["fbq_calls"])

            # Visit 2: nothing turned off at load: the webhook is reachable and gets events.
            # Visit 3: the warehouse turned off at load.
            on = visit(browser, site, source, 'analytics.load(K); analytics.track("Lead"); analytics.track("Everyone gets this"); done();')
            assert on["gtag"] and any(c[1] == "Lead" for c in on["gtag_calls"] if c[0] == "event")
            visit(browser, site, source, 'analytics.load(K, {integrations: {Warehouse: false}}); analytics.track("Lead"); analytics.track("Not for the warehouse"); done();')

            # Every event is stored, and a turned-off destination is named false on each one.
            rows = site.stored(source["id"])
            assert {"Turned off at load", "Everyone gets this", "Not for the warehouse"} <= set(track_names(rows))
            by_name = {r.get("event"): r for r in rows if r.get("type") == "track"}
            assert by_name["Turned off at load"]["integrations"]["Webhooks"] is False
            assert by_name["Turned off at load"]["integrations"]["Google Analytics 4"] is False
            assert by_name["Not for the warehouse"]["integrations"]["Warehouse"] is False

            # Cloud mode: the webhook gets visits 2 and 3 (fan-out routes the event log in order,
            # behind a cursor: once visit 3's last event is delivered, visit 1's were routed)...
            hook.wait_for(1, timeout=30, predicate=lambda r: r.json().get("event") == "Not for the warehouse")
            time.sleep(0.5)
            delivered = sorted(r.json().get("event") or r.json().get("type") for r in hook.snapshot())
            assert "Everyone gets this" in delivered and "Not for the warehouse" in delivered
            # ...and nothing at all of visit 1 (its page, identify and tracks all said Webhooks: false).
            visitor1 = [r.json() for r in hook.snapshot() if r.json().get("userId") == "visitor-1"
                        or r.json().get("event") == "Turned off at load"]
            assert visitor1 == []

            # The warehouse, synced through the admin API, follows the same rule.
            token = tokens.create_token(engine, "snippet-test")
            sync = httpx.post(f"{live.url}/api/v1/destinations/{warehouse['id']}/sync",
                              headers={"Authorization": f"Bearer {token}"}, timeout=60)
            assert sync.status_code == 200 and sync.json()["sync"]["status"] == "succeeded", sync.text
            with sqlite3.connect(warehouse_file) as db:
                loaded = sorted(e for (e,) in db.execute("SELECT event_text FROM tracks") if e != "__end__")
            assert "Turned off at load" in loaded and "Everyone gets this" in loaded
            assert "Not for the warehouse" not in loaded
            assert loaded.count("Lead") == 2   # visits 1 and 2; visit 3's Lead said Warehouse: false too
    finally:
        live.stop()
        listener.stop()
        engine.dispose()


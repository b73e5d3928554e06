"""The bundle served first-party over https, as in production behind a TLS-terminating proxy.

The server runs with ``SWITCHBOARD_PUBLIC_URL=https://shop.example``, so its snippet, bundle and
collector URLs are all on the site's own https origin. Chromium loads ``https://shop.example/``;
``page.route`` answers the page itself and forwards every other request on that origin to the
real server (the part nginx or a CDN plays in deployment), so the browser sees one secure
origin. What only https shows: the identity cookies carry ``Secure`` when the page asks for it
(``cookie: {secure: true}``, analytics-next's option; by default they don't, as with analytics-next,
so a plain-http page of the same site still knows the visitor), and events reach the collector
through the first-party path with the page's https URL in their context.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from vendor_stubs import ADMIN_TOKEN, VendorRoutes, Workspace, stored_rows


ORIGIN = "https://shop.example"


@pytest.fixture
def server(tmp_path, live_server_factory):
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    live = live_server_factory(db_url, SWITCHBOARD_ADMIN_TOKEN=ADMIN_TOKEN, SWITCHBOARD_PUBLIC_URL=ORIGIN)
    return live, db_url


@pytest.mark.parametrize("secure", [False, True], ids=["default", "cookie-secure"])
def test_first_party_https_sets_secure_cookies_and_collects(server, browser, secure):
    live, db_url = server
    workspace = Workspace(live.url)
    try:
        source = workspace.source("Secure shop")
        snippet = workspace.snippet(source["write_key"])
    finally:
        workspace.http.close()
    # First-party URLs: the snippet builds the bundle's from its origin and the key load() gets.
    assert f'a._cdn="{ORIGIN}"' in snippet and '"/analytics.js/v1/"' in snippet
    if secure:
        load = f'analytics.load("{source["write_key"]}");'
        assert load in snippet
        snippet = snippet.replace(load, f'analytics.load("{source["write_key"]}", {{cookie: {{secure: true}}}});')
    html = f"<!doctype html><html><head><title>Shop</title><script>{snippet}</script></head><body>shop</body></html>"
    forwarded: list[str] = []

    def handle(route):
        url = urlsplit(route.request.url)
        if url.path == "/":
            route.fulfill(status=200, content_type="text/html", body=html)
            return
        target = live.url + url.path + (f"?{url.query}" if url.query else "")
        response = route.fetch(url=target)
        forwarded.append(f"{route.request.method} {url.path} {response.status}")
        route.fulfill(response=response)

    context = browser.new_context()
    try:
        VendorRoutes().install(context)
        context.route(f"{ORIGIN}/**", handle)
        page = context.new_page()
        page.goto(f"{ORIGIN}/", wait_until="domcontentloaded")
        page.wait_for_function("() => window.analytics && !Array.isArray(window.analytics)")
        assert page.evaluate("window.isSecureContext") is True
        page.evaluate("analytics.identify('shopper-1'); analytics.track('Checkout Started')")
        # Waiting through the page keeps the route handler (which forwards the collector's
        # requests) running meanwhile.
        rows = stored_rows(db_url, source["id"], lambda rows: any(r["event"].get("event") == "Checkout Started"
                                                                   for r in rows), page=page)
        track = next(r["event"] for r in rows if r["event"].get("event") == "Checkout Started")
        assert track["userId"] == "shopper-1"
        assert track["context"]["page"]["url"] == f"{ORIGIN}/"
        jar = {c["name"]: c for c in context.cookies(ORIGIN)}
        for name in ("ajs_anonymous_id", "ajs_user_id"):
            assert jar[name]["secure"] is secure, f"{name}: Secure only when the page asks for it"
            assert jar[name]["sameSite"] == "Lax"
        assert track["anonymousId"] == jar["ajs_anonymous_id"]["value"]
        # Everything went through the site's own origin: the bundle and the collector.
        assert any(f.startswith("GET /analytics.js/v1/") and f.endswith(" 200") for f in forwarded)
        assert any(f.startswith("POST /v1/") and f.endswith(" 200") for f in forwarded)
    finally:
        context.close()

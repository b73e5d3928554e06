"""Helpers for the bundle's browser tests: a live server with sources, a fake site on another
origin (http://shop.localhost: a secure context that may reach 127.0.0.1) (served through page.route, with a CSP without 'unsafe-eval'), vendor script stubs that
record calls, and a way to wait for events stored by the real collector."""

from __future__ import annotations

import time
from typing import Any

import httpx

from server.config import Config
from server.cdn.snippet import render_snippet
from server.store import events, workspace

SITE = "http://shop.localhost"

# Vendor stubs: what the real gtag.js / fbevents.js do that our loaders rely on, plus a record.
GTAG_STUB = """
window.__gtag = [];
(function () {
  var dl = window.dataLayer = window.dataLayer || [];
  function rec(a) { window.__gtag.push(JSON.parse(JSON.stringify(Array.prototype.slice.call(a)))); }
  for (var i = 0; i < dl.length; i++) rec(dl[i]);
  dl.push = function (a) { rec(a); return Array.prototype.push.call(dl, a); };
})();
"""
FBQ_STUB = """
window.__fbq = [];
(function () {
  var f = window.fbq;
  f.callMethod = function () { window.__fbq.push(JSON.parse(JSON.stringify(Array.prototype.slice.call(arguments)))); };
  var q = f.queue; f.queue = [];
  for (var i = 0; i < q.length; i++) f.callMethod.apply(f, q[i]);
})();
"""


def csp(server_url: str) -> str:
    return ("default-src 'none'; script-src 'self' 'unsafe-inline' " + server_url
            + " https://www.googletagmanager.com https://connect.facebook.net; connect-src " + server_url)


def site_page(server_url: str, write_key: str, body_script: str = "", title: str = "Shop") -> str:
    snippet = render_snippet(Config(public_url=server_url), write_key)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<script>
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {{ window.__violations.push(e.violatedDirective + " " + e.blockedURI); }});
{snippet}
{body_script}
</script></head><body><a id="out" href="{SITE}/next.html">next</a></body></html>"""


def serve_site(page, server_url: str, pages: dict[str, str], vendors: dict[str, str | None] | None = None) -> dict:
    """Route SITE/<path> to the given HTML and vendor URLs to stubs (None → aborted)."""
    seen: dict[str, list[str]] = {"gtag": [], "fbq": []}
    # The site (shop.localhost) reaching our server on 127.0.0.1: Chromium's local network access check.
    page.context.grant_permissions(["local-network-access"])

    def site(route):
        path = route.request.url.removeprefix(SITE).split("?")[0]
        html = pages.get(path, "<!doctype html><title>next</title><p>next page</p>")
        route.fulfill(status=200, body=html, headers={"Content-Type": "text/html", "Content-Security-Policy": csp(server_url)})

    page.route(f"{SITE}/**", site)
    vendors = {"gtag": GTAG_STUB, "fbq": FBQ_STUB, **(vendors or {})}

    def vendor(name):
        def handle(route):
            seen[name].append(route.request.url)
            if vendors[name] is None:
                route.abort()
            else:
                route.fulfill(status=200, body=vendors[name], headers={"Content-Type": "application/javascript"})
        return handle

    page.route("https://www.googletagmanager.com/**", vendor("gtag"))
    page.route("https://connect.facebook.net/**", vendor("fbq"))
    return seen


def make_source(engine, name: str, destinations: list[dict[str, Any]]) -> dict:
    source = workspace.create_source(engine, name)
    for d in destinations:
        workspace.add_destination(engine, source["id"], mode="device", enabled=True, **d)
    if destinations:
        served(engine, source)
    return source


def served(engine, source: dict[str, Any], timeout: float = 10.0) -> None:
    """Wait until the live server on ``engine``'s database serves the source's current version.

    These helpers write the store from the test process: another process, to the server. Its
    bundle directory may have seen the source a moment after it was created, before the
    destinations came (version 1), and another process's change reaches it at its next look
    (every 0.5 s, server/cdn/bundle_directory.py). A page opened meanwhile got a bundle without
    its destinations, and its device-mode checks failed now and then."""
    from tests_conftest import LiveServer

    live = LiveServer.serving.get(str(engine.url))
    if live is None:
        return
    version = workspace.get_source(engine, source["id"])["settings_version"]
    url = f"{live.url}/analytics.js/v1/{source['write_key']}/analytics.min.js"
    deadline = time.monotonic() + timeout
    while f'"version":{version}' not in httpx.get(url).text:
        assert time.monotonic() < deadline, f"the server never served version {version} of {source['write_key']}"
        time.sleep(0.05)


GA4 = {"slug": "google_analytics_4", "settings": {"measurement_id": "G-TEST123", "api_secret": "ga-secret"}}
PIXEL = {"slug": "meta_pixel", "settings": {"pixel_id": "1234567890", "access_token": "fb-secret"}}


def wait_for_events(engine, source_id: int, count: int, timeout: float = 15.0, page=None, **filters) -> list[dict]:
    """Stored events of a source, oldest first, once at least ``count`` are there. Pass ``page``
    when routes are active: sync Playwright only runs route handlers inside its own calls."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r["event"] for r in reversed(events.list_events(engine, source_id, limit=500, **filters))]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        page.wait_for_timeout(100) if page is not None else time.sleep(0.1)

"""Server-set cookies in real Chromium: a page on www.shop.localhost, the collector on
t.shop.localhost (one site: *.localhost resolves to loopback in Chromium). With the source's
setting on, the bundle has the collector set the visitor's id cookie again, once a day: a cookie
a script shortened (as Safari caps them at 7 days) comes back with its full year, from the
collector's Set-Cookie; without the setting, nothing is asked."""

from __future__ import annotations

import time

import bundle_site
import httpx
import pytest
from bundle_site import serve_site, site_page, wait_for_events
from tests_conftest import LiveServer

from server.store import open_store, workspace

SITE = "http://www.shop.localhost"
YEAR = 365 * 86400
pytestmark = pytest.mark.timeout(90)


def anonymous_cookie(page) -> dict | None:
    return next((c for c in page.context.cookies() if c["name"] == "ajs_anonymous_id"), None)


def test_the_collector_sets_the_id_cookie_again_once_a_day(page, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    engine = open_store(url)
    source = workspace.create_source(engine, "Shop")
    server = LiveServer(url, SWITCHBOARD_DELIVERY_WORKERS="false")
    public = f"http://t.shop.localhost:{server.port}"
    server.env["SWITCHBOARD_PUBLIC_URL"] = public
    server.start()
    try:
        monkeypatch.setattr(bundle_site, "SITE", SITE)  # the fake site's origin, for serve_site's routes
        serve_site(page, public, {"/": site_page(public, source["write_key"])})
        asked: list = []
        page.on("response", lambda r: asked.append(r) if r.url.endswith("/v1/keep") else None)

        # Off (the default): the bundle asks nothing.
        page.goto(SITE + "/")
        wait_for_events(engine, source["id"], 1, page=page)
        page.wait_for_timeout(500)
        assert asked == []
        first = anonymous_cookie(page)
        assert first is not None and first["domain"] == ".shop.localhost"

        workspace.update_source(engine, source["id"], server_cookies=True)
        version = workspace.get_source(engine, source["id"])["settings_version"]
        bundle = f"{server.url}/analytics.js/v1/{source['write_key']}/analytics.min.js"

        deadline = time.monotonic() + 10
        while f'"version":{version}' not in httpx.get(bundle).text:
            assert time.monotonic() < deadline, "the server never served the new version"
            time.sleep(0.05)
        # Safari's cap, as a script would leave it: the same id, one hour left.
        page.evaluate("document.cookie = 'ajs_anonymous_id=' + encodeURIComponent(%r) + "
                      "'; path=/; max-age=3600; domain=.shop.localhost'" % first["value"])
        assert anonymous_cookie(page)["expires"] < time.time() + 2 * 3600

        page.goto(SITE + "/", wait_until="load")
        deadline = time.monotonic() + 10
        while not asked and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        [response] = asked  # (a keepalive fetch's body and raw headers are not for Playwright to read)
        assert response.status == 200
        assert response.request.post_data_json == {
            "writeKey": source["write_key"], "domain": "shop.localhost", "names": ["ajs_anonymous_id"], "path": "/",
            "sameSite": "Lax", "secure": False, "maxage": 365}
        kept = anonymous_cookie(page)
        assert kept["value"] == first["value"] and kept["domain"] == ".shop.localhost"
        assert kept["expires"] > time.time() + YEAR - 3600  # the collector's year, not the script's hour

        # Once a day: the next page asks nothing; the events carry the same visitor.
        page.goto(SITE + "/", wait_until="load")
        page.wait_for_timeout(500)
        assert len(asked) == 1
        events = wait_for_events(engine, source["id"], 3, page=page)
        assert {e["anonymousId"] for e in events} == {first["value"]}
    finally:
        server.stop()
        engine.dispose()

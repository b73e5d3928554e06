"""Our device-mode loaders served as @segment/analytics-next remote plugins honour analytics-next's
addDestinationMiddleware (the plugin wrapper's addMiddleware), as its own destinations do."""

from __future__ import annotations

import pytest
from bundle_site import PIXEL, SITE, make_source, serve_site, wait_for_events
from test_analytics_next import analytics_next_js  # noqa: F401  (the module fixture that builds it)

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)
from server.store import open_store


@pytest.fixture(scope="session")
def base_url():
    return None


def test_destination_middleware_reaches_our_remote_plugin_under_analytics_next(page, tmp_path, analytics_next_js):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'next.db'}"
    engine = open_store(url)
    live = LiveServer(url).start()
    try:
        source = make_source(engine, "Next middleware", [PIXEL])
        html = f"""<!doctype html><html><head><title>Next page</title>
<script src="{SITE}/analytics-next.js"></script>
<script>
AnalyticsBrowser.load({{ writeKey: {source['write_key']!r}, cdnURL: {live.url!r} }})
  .then(async function (r) {{
    var analytics = r[0];
    await analytics.addDestinationMiddleware("Meta Pixel", function ({{payload, next}}) {{
      if (payload.event() === "Hidden") return next(null);
      payload.obj.event = "Renamed " + payload.event();
      next(payload);
    }});
    await analytics.track("Hidden");
    await analytics.track("Bought");
    window.__loaded = true;
  }})
  .catch(function (e) {{ window.__loadError = String(e); }});
</script></head><body>next</body></html>"""
        serve_site(page, live.url, {"/next.html": html})
        page.route(f"{SITE}/analytics-next.js", lambda route: route.fulfill(
            status=200, body=analytics_next_js, headers={"Content-Type": "application/javascript"}))
        page.goto(f"{SITE}/next.html")
        page.wait_for_function("() => window.__loaded === true || window.__loadError !== undefined")
        assert page.evaluate("window.__loadError") is None
        page.wait_for_function("() => window.__fbq && window.__fbq.some(c => c.includes('Renamed Bought'))")
        assert page.evaluate("window.__fbq.some(c => c.includes('Hidden') || c.includes('Renamed Hidden'))") is False
        stored = wait_for_events(engine, source["id"], 2, page=page, type="track")
        assert {e["event"] for e in stored} == {"Hidden", "Bought"}  # the collector gets them unchanged
    finally:
        live.stop()
        engine.dispose()

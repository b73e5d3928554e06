"""Segment's own @segment/analytics-next (from npm, bundled with esbuild) against our settings
document: its events reach our collector and our device-mode loaders run as its remote plugins."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from bundle_site import GA4, SITE, make_source, serve_site, wait_for_events

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)
from server.store import open_store

E2E = Path(__file__).resolve().parent
BUILT = E2E / "node_modules" / ".switchboard" / "analytics-next.js"


@pytest.fixture(scope="module")
def analytics_next_js() -> str:
    if not BUILT.exists():  # `make node-deps` installed the packages; build the test file once
        subprocess.run(["node", str(E2E / "build-analytics-next.mjs")], check=True, cwd=E2E, timeout=120)
    return BUILT.read_text()


def test_analytics_next_loads_our_settings_and_its_events_and_plugins_work(page, tmp_path, analytics_next_js):
    url = f"sqlite:///{tmp_path / 'next.db'}"
    engine = open_store(url)
    live = LiveServer(url).start()
    try:
        source = make_source(engine, "Next", [GA4])
        html = f"""<!doctype html><html><head><title>Next page</title>
<script src="{SITE}/analytics-next.js"></script>
<script>
AnalyticsBrowser.load({{ writeKey: {source['write_key']!r}, cdnURL: {live.url!r} }})
  .then(function (r) {{
    var analytics = r[0];
    window.__loaded = true;
    analytics.identify("next-user", {{plan: "team"}});
    analytics.track("Order Completed", {{order_id: "n-1", total: 12, currency: "USD"}});
  }})
  .catch(function (e) {{ window.__loadError = String(e); }});
</script></head><body>next</body></html>"""
        seen = serve_site(page, live.url, {"/next.html": html})
        page.route(f"{SITE}/analytics-next.js", lambda route: route.fulfill(
            status=200, body=analytics_next_js, headers={"Content-Type": "application/javascript"}))
        page.goto(f"{SITE}/next.html")
        page.wait_for_function("() => window.__loaded === true || window.__loadError !== undefined")
        assert page.evaluate("window.__loadError") is None

        stored = wait_for_events(engine, source["id"], 2, page=page)
        by_type = {e["type"]: e for e in stored}
        assert set(by_type) == {"identify", "track"}
        assert by_type["track"]["event"] == "Order Completed"
        assert by_type["track"]["context"]["library"]["name"].startswith("analytics")
        assert by_type["identify"]["userId"] == "next-user"

        # Our GA4 loader ran as analytics-next's remote plugin, with the public settings.
        assert seen["gtag"] == ["https://www.googletagmanager.com/gtag/js?id=G-TEST123"]
        page.wait_for_function("() => window.__gtag && window.__gtag.some(function (c) { return c[1] === 'purchase'; })")
        purchase = next(c for c in page.evaluate("window.__gtag") if c[:2] == ["event", "purchase"])[2]
        assert purchase["transaction_id"] == "n-1" and purchase["value"] == 12
    finally:
        live.stop()
        engine.dispose()

"""Public setting values that are hostile to a <script> context reach the loader unchanged, and the
bundle still runs (Chromium, a CSP without 'unsafe-eval')."""

from __future__ import annotations

import pytest
from bundle_site import SITE, make_source, serve_site, site_page
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)
from server.store import open_store

PIECES = ["</script>", "<script>", "<!--", '"', "'", "\\", "\u2028", "\u2029", "${x}", "`", "*/", "\n", "é", "\x00"]
values = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), min_size=1, max_size=8).map("".join)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('values') / 'live.db'}"
    engine = open_store(url)
    live = LiveServer(url).start()
    yield live, engine
    live.stop()
    engine.dispose()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_hostile_public_values_reach_the_loader_unchanged(page, server, value):
    live, engine = server
    source = make_source(engine, "Values", [{
        "slug": "google_analytics_4", "settings": {"measurement_id": "G-VALUES1", "cookie_domain": value}}])
    serve_site(page, live.url, {"/v.html": site_page(live.url, source["write_key"], "analytics.track('Ran');")})
    page.goto(f"{SITE}/v.html")
    page.wait_for_function("() => window.__gtag && window.__gtag.some(function (c) { return c[1] === 'Ran'; })")
    config = next(c for c in page.evaluate("window.__gtag") if c[0] == "config")
    assert config[2]["cookie_domain"] == value
    assert page.evaluate("window.__violations") == []

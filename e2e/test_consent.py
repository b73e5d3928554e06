"""Consent gating in the browser core, in real Chromium against a real server and collector.

One source with GA4 (consent category "Analytics"), Meta Pixel ("Advertising") and Hotjar (no
categories). Each test opens its own browser context, so it starts as a first visit (no cookies,
no localStorage) unless it reloads.
"""

from __future__ import annotations

import re

import pytest
from loader_site import site_fixture
from vendor_stubs import SITE_PATH, VendorRoutes, calls, open_site, run, stored_rows, wait_calls


MID = "G-CONSENT01"
GA4_URL = f"https://www.googletagmanager.com/gtag/js?id={MID}"
DENIED = {"Analytics": False, "Advertising": False}
ANALYTICS_ONLY = {"Analytics": True, "Advertising": False}

site = site_fixture("consent", {
    "google_analytics_4": {"measurement_id": MID, "consent_categories": ["Analytics"]},
    "meta_pixel": {"pixel_id": "1234567890", "consent_categories": ["Advertising"]},
    "hotjar": {"site_id": "1234567"},
})


@pytest.fixture
def visit(site, browser):
    """A first visit: a fresh browser context with every vendor routed to its stub."""
    context = browser.new_context()
    routes = VendorRoutes().install(context)
    page = site.open(context)
    page.routes = routes
    yield page
    context.close()


def ready(page) -> bool:
    return page.evaluate("() => new Promise(r => analytics.ready(() => r(true)))")


def stored_events(site, source_id: int, predicate, timeout: float = 10.0) -> list[dict]:
    """The events the collector stored for ``source_id`` (newest first), once ``predicate`` holds."""
    rows = stored_rows(site.db_url, source_id, lambda rows: predicate([r["event"] for r in rows]), timeout)
    return [row["event"] for row in rows]


def stored(site, name: str, source_id: int | None = None) -> dict:
    """The stored track event named ``name`` (waits for it)."""
    found = stored_events(site, source_id or site.source["id"], lambda ev: any(e.get("event") == name for e in ev))
    matches = [e for e in found if e.get("event") == name]
    assert matches, f"the collector did not store {name!r}"
    return matches[0]


def preferences(event: dict):
    return event.get("context", {}).get("consent", {}).get("categoryPreferences")


def hotjar_saw(page, name: str) -> None:
    """Wait until Hotjar (uncategorised) got ``name``: the core has delivered the call by then."""
    wait_calls(page, "hotjar", lambda c: ["event", name] in c)


def ga4_events(page) -> list[str]:
    return [c[1] for c in calls(page, "google_analytics_4") or [] if c[0] == "event"]


def track(page, name: str) -> None:
    page.evaluate("n => analytics.track(n)", name)


def test_first_visit_loads_only_uncategorised_destinations_and_stamps_denied(site, visit):
    page = visit
    assert ready(page) is True, "ready() must not wait for destinations waiting for consent"
    track(page, "First Visit")
    hotjar_saw(page, "First Visit")
    page.wait_for_timeout(300)
    assert "google_analytics_4" not in page.routes.requests and "meta_pixel" not in page.routes.requests
    assert calls(page, "google_analytics_4") is None and calls(page, "meta_pixel") is None
    assert page.evaluate("analytics.getConsent()") == DENIED
    event = stored(site, "First Visit")
    assert preferences(event) == DENIED
    # Not delivered by GA4/Meta in the browser: the server decides for them (by the same rule).
    assert event["integrations"] == {"Hotjar": False}
    assert event["_metadata"]["bundled"] == ["Hotjar"]


def test_granting_loads_the_destination_once_without_replay_then_reload_and_withdrawal(site, visit):
    page = visit
    track(page, "Before Consent")
    hotjar_saw(page, "Before Consent")

    # Grant Analytics: GA4 loads now (once, even if granted again), Meta stays away.
    run(page, "analytics.setConsent({Analytics: true}); analytics.setConsent({Analytics: true})")
    wait_calls(page, "google_analytics_4", lambda c: any(x[0] == "config" for x in c))
    track(page, "After Consent")
    wait_calls(page, "google_analytics_4", lambda c: ["event", "After_Consent", {"send_to": MID}] in c)
    assert page.routes.requests["google_analytics_4"] == [GA4_URL]
    assert "meta_pixel" not in page.routes.requests and calls(page, "meta_pixel") is None
    # Nothing from before the consent was replayed (not the page view, not the track).
    assert ga4_events(page) == ["After_Consent"]
    assert page.evaluate("analytics.getConsent()") == ANALYTICS_ONLY
    assert preferences(stored(site, "Before Consent")) == DENIED
    after = stored(site, "After Consent")
    assert preferences(after) == ANALYTICS_ONLY
    assert after["integrations"] == {"Google Analytics 4": False, "Hotjar": False}

    # A reload: the preferences persist, GA4 loads at once and gets the initial page view.
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function("() => window.analytics && !Array.isArray(window.analytics)")
    wait_calls(page, "google_analytics_4", lambda c: any(x[:2] == ["event", "page_view"] for x in c))
    assert page.routes.requests["google_analytics_4"] == [GA4_URL, GA4_URL]
    assert "meta_pixel" not in page.routes.requests
    assert page.evaluate("analytics.getConsent()") == ANALYTICS_ONLY
    track(page, "After Reload")
    wait_calls(page, "google_analytics_4", lambda c: ["event", "After_Reload", {"send_to": MID}] in c)
    assert preferences(stored(site, "After Reload")) == ANALYTICS_ONLY
    me = page.evaluate("analytics.user().anonymousId()")
    mine = lambda ev: [e for e in ev if e["type"] == "page" and e["anonymousId"] == me]  # noqa: E731
    pages = mine(stored_events(site, site.source["id"], lambda ev: len(mine(ev)) >= 2))
    # Newest first: the reloaded page's initial page view, then the first visit's.
    assert [preferences(e) for e in pages] == [ANALYTICS_ONLY, DENIED]

    # Withdrawal: GA4 (loaded, it cannot be unloaded) gets nothing more; the stamp says so.
    run(page, "analytics.setConsent({Analytics: false})")
    assert page.evaluate("analytics.getConsent()") == DENIED
    before = ga4_events(page)
    track(page, "After Withdrawal")
    page.evaluate("() => analytics.page('Withdrawn')")
    hotjar_saw(page, "After Withdrawal")
    page.wait_for_timeout(200)
    assert ga4_events(page) == before
    withdrawn = stored(site, "After Withdrawal")
    assert preferences(withdrawn) == DENIED and "Google Analytics 4" not in withdrawn["integrations"]
    # Preferences are persisted as given.
    assert page.evaluate("JSON.parse(localStorage.getItem('sb_consent'))") == {"Analytics": False}


def test_set_consent_queued_by_the_snippet_before_the_bundle_arrives(site, browser):
    context = browser.new_context()
    try:
        routes = VendorRoutes().install(context)
        snippet = site.workspace.snippet(site.write_key)
        # The consent tool answers before the bundle has arrived: the snippet queues the calls.
        html = ("<!doctype html><html><head><title>Queued</title><script>" + snippet + """
analytics.setConsent({Analytics: true, Advertising: true});
analytics.track("Queued Before Load");
window.__queued = Array.isArray(analytics) ? analytics.map(function (c) { return c[0]; }) : null;
</script></head><body>queued</body></html>""")
        page = context.new_page()
        base = site.workspace.url + SITE_PATH
        page.route(re.compile("^" + re.escape(base) + "/"), lambda route: route.fulfill(
            status=200, content_type="text/html", body=html))
        page.goto(base + "/queued", wait_until="domcontentloaded")
        page.wait_for_function("() => window.analytics && !Array.isArray(window.analytics)")
        assert page.evaluate("window.__queued") == ["page", "setConsent", "track"]
        # Consent calls run before the queued page/track (as listeners and middleware do), so the
        # snippet's initial page and the queued track reach both vendors and carry the consent.
        wait_calls(page, "google_analytics_4", lambda c: ["event", "Queued_Before_Load", {"send_to": MID}] in c)
        wait_calls(page, "meta_pixel", lambda c: any(x[0] == "trackSingle" and x[2] == "PageView" for x in c))
        assert routes.requests["google_analytics_4"] == [GA4_URL] and len(routes.requests["meta_pixel"]) == 1
        both = {"Analytics": True, "Advertising": True}
        assert page.evaluate("analytics.getConsent()") == both
        event = stored(site, "Queued Before Load")
        assert preferences(event) == both
        assert event["integrations"] == {"Google Analytics 4": False, "Meta Pixel": False, "Hotjar": False}
    finally:
        context.close()


def test_the_callers_own_context_consent_wins_for_that_call(site, visit):
    page = visit
    run(page, "analytics.setConsent({Analytics: true})")
    wait_calls(page, "google_analytics_4", lambda c: any(x[0] == "config" for x in c))
    own = {"categoryPreferences": {"Analytics": False, "Custom": True}, "source": "cmp"}
    page.evaluate("c => analytics.track('Own Consent', {}, {context: {consent: c}})", own)
    track(page, "Default Consent")
    wait_calls(page, "google_analytics_4", lambda c: ["event", "Default_Consent", {"send_to": MID}] in c)
    assert "Own_Consent" not in ga4_events(page), "the call's own preferences deny Analytics"
    assert stored(site, "Own Consent")["context"]["consent"] == own
    assert preferences(stored(site, "Default Consent")) == ANALYTICS_ONLY


def test_a_bundle_without_categories_adds_no_consent_until_preferences_are_set(site, browser):
    workspace = site.workspace
    plain = workspace.source("No consent site")
    workspace.destination(plain["id"], "hotjar", {"site_id": "7654321"})
    context = browser.new_context()
    try:
        VendorRoutes().install(context)
        page = open_site(context, workspace, plain["write_key"])
        assert ready(page) is True
        track(page, "Plain")
        hotjar_saw(page, "Plain")
        found = stored_events(site, plain["id"], lambda ev: {"page", "track"} <= {e["type"] for e in ev})
        assert sorted(e["type"] for e in found) == ["page", "track"]
        assert all("consent" not in e["context"] for e in found)
        assert page.evaluate("analytics.getConsent()") == {}
        # Once a consent tool sets preferences on this device, events carry them.
        run(page, "analytics.setConsent({Analytics: true})")
        track(page, "Plain After")
        assert preferences(stored(site, "Plain After", plain["id"])) == {"Analytics": True}
    finally:
        context.close()


def test_each_change_of_preferences_is_recorded_once_for_the_collector_only(site, visit):
    page = visit
    name = "Segment Consent Preference Updated"
    me = page.evaluate("analytics.user().anonymousId()")
    mine = lambda ev: [e for e in ev if e.get("event") == name and e["anonymousId"] == me]  # noqa: E731
    run(page, "analytics.setConsent({Analytics: true}); analytics.setConsent({Analytics: true})")
    wait_calls(page, "google_analytics_4", lambda c: any(x[0] == "config" for x in c))
    run(page, "analytics.setConsent({Advertising: false})")  # no change: nothing to record
    run(page, "analytics.setConsent({Analytics: false})")
    track(page, "After Changes")
    hotjar_saw(page, "After Changes")
    mine(stored_events(site, site.source["id"], lambda ev: len(mine(ev)) >= 2))
    page.wait_for_timeout(300)  # room for a wrong third record to arrive
    found = mine(stored_events(site, site.source["id"], lambda ev: True))
    # Newest first: the withdrawal, then the grant; each stamped with the preferences it set.
    assert [preferences(e) for e in found] == [DENIED, ANALYTICS_ONLY]
    assert all(e["integrations"] == {"All": False, "Warehouse": True} for e in found), "no vendor is sent it"
    assert not any("Consent" in str(c) for c in calls(page, "hotjar") or [])
    assert not any("Consent" in e for e in ga4_events(page))

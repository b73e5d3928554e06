"""Google Tag Manager's device-mode loader in real Chromium against a real server."""

from __future__ import annotations

from loader_site import new_calls_of, page_fixture, site_fixture
from vendor_stubs import (
    VendorRoutes, calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable, run,
    wait_calls,
)

CONTAINER = "GTM-ABC1234"
URL = ("https://www.googletagmanager.com/gtm.js?id=GTM-ABC1234"
       "&gtm_auth=Xy_z-12&gtm_preview=env-5&gtm_cookies_win=x")


site = site_fixture("gtm", {
    "google_tag_manager": {"container_id": CONTAINER, "gtm_auth": "Xy_z-12", "gtm_preview": "env-5"},
    "hotjar": {"site_id": "1234567"},
})
page = page_fixture("google_tag_manager", lambda c: len(c) >= 1)
pushed = new_calls_of("google_tag_manager")


def test_container_of_the_environment_requested_once_after_gtm_start(page):
    assert page.routes.requests["google_tag_manager"] == [URL]
    first = calls(page, "google_tag_manager")[0]
    assert first["event"] == "gtm.js" and isinstance(first["gtm.start"], (int, float))


def test_track_pushes_an_event_with_properties_and_ids(page):
    [entry] = pushed(page, 'analytics.track("Signup Clicked", {button: "hero"})')
    anonymous_id = page.evaluate("() => analytics.user().anonymousId()")
    assert entry == {"event": "Signup Clicked", "button": "hero", "segmentAnonymousId": anonymous_id}


def test_named_page_pushes_viewed_page_and_unnamed_page_does_not(page):
    before = len(calls(page, "google_tag_manager"))
    pushed(page, 'analytics.page("Pricing"); analytics.page()')
    page.wait_for_timeout(100)
    new = calls(page, "google_tag_manager")[before:]
    assert [e["event"] for e in new] == ["Viewed Pricing Page"]
    assert new[0]["name"] == "Pricing" and "/__loader_test_site__/" in new[0]["url"]


def test_identified_user_id_rides_along(page):
    [entry] = pushed(page, 'analytics.identify("u-9"); analytics.track("After Login")')
    assert entry["event"] == "After Login" and entry["userId"] == "u-9"


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "google_tag_manager", 'analytics.track("Early Bird", {a: 1})',
        lambda c: any(e.get("event") == "Early Bird" for e in c))
    assert recorded[0]["event"] == "gtm.js"
    assert next(e for e in recorded if e.get("event") == "Early Bird")["a"] == 1


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "google_tag_manager")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "google_tag_manager", "hotjar", lambda c, marker: ["event", marker] in c)


def test_live_container_in_a_renamed_data_layer(site, browser):
    row = site.destinations["google_tag_manager"]
    site.workspace.update(row["id"], {"gtm_auth": None, "gtm_preview": None, "data_layer_name": "sbLayer"})
    context = browser.new_context()
    try:
        routes = VendorRoutes().install(context)
        page = site.open(context)
        run(page, 'analytics.track("Renamed Layer", {x: 1})')
        page.wait_for_function("() => window.sbLayer && window.sbLayer.calls && window.sbLayer.calls.length >= 2")
        assert routes.requests["google_tag_manager"] == ["https://www.googletagmanager.com/gtm.js?id=GTM-ABC1234&l=sbLayer"]
        entries = page.evaluate("() => window.sbLayer.calls")
        assert entries[0]["event"] == "gtm.js"
        assert any(e.get("event") == "Renamed Layer" and e.get("x") == 1 for e in entries)
        assert page.evaluate("() => window.dataLayer") is None
    finally:
        context.close()
        site.workspace.update(row["id"], {"gtm_auth": "Xy_z-12", "gtm_preview": "env-5", "data_layer_name": None})


def test_all_pages_with_and_without_the_initial_page_view(site, browser):
    row = site.destinations["google_tag_manager"]

    def loaded_a_page_events(initial: bool) -> tuple[int, int]:
        site.workspace.update(row["id"], {"track_all_pages": True, "track_initial_page": initial})
        context = browser.new_context()
        try:
            VendorRoutes().install(context)
            page = site.open(context)
            page.evaluate("() => new Promise(r => analytics.ready(() => r(true)))")
            run(page, 'analytics.track("Marker")')
            entries = wait_calls(page, "google_tag_manager", lambda c: any(e.get("event") == "Marker" for e in c))
            at_load = sum(e.get("event") == "Loaded a Page" for e in entries)
            run(page, "analytics.page()")
            entries = wait_calls(page, "google_tag_manager", lambda c: sum(e.get("event") == "Loaded a Page" for e in c) > at_load)
            return at_load, sum(e.get("event") == "Loaded a Page" for e in entries)
        finally:
            context.close()

    try:
        assert loaded_a_page_events(initial=True) == (1, 2)
        assert loaded_a_page_events(initial=False) == (0, 1)
    finally:
        site.workspace.update(row["id"], {"track_all_pages": None, "track_initial_page": None})

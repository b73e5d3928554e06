"""Mixpanel's device-mode loader in real Chromium against a real server (vendor script stubbed)."""

from __future__ import annotations

import pytest
from loader_site import page_fixture, site_fixture
from vendor_stubs import (
    VendorRoutes, calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable,
    open_analytics_next, run, wait_calls,
)

TOKEN = "0123456789abcdef0123456789abcdef"
URL = "https://cdn.mxpnl.com/libs/mixpanel-2-latest.min.js"


site = site_fixture("mixpanel", {
    "mixpanel": {"token": TOKEN, "region": "eu", "people": True, "track_all_pages": False,
                 "track_named_pages": True, "group_key": "company_id"},
    "hotjar": {"site_id": "1234567"},  # a neighbour for the blocked-script test
})
page = page_fixture("mixpanel", lambda c: c and c[0][0] == "init")


@pytest.fixture(scope="module")
def loaded(page):
    """One page with the vendor served at once, shared by the mapping tests below."""
    return page, page.routes


def test_script_requested_once_and_initialised_with_eu_api_host(loaded):
    page, routes = loaded
    assert routes.requests["mixpanel"] == [URL]
    init = calls(page, "mixpanel")[0]
    assert init[0] == "init" and init[1] == TOKEN
    assert init[2]["api_host"] == "https://api-eu.mixpanel.com"
    assert init[2]["persistence"] == "cookie" and init[2]["cross_subdomain_cookie"] is True


def test_track(loaded):
    page, _ = loaded
    before = calls(page, "mixpanel")
    run(page, 'analytics.track("Video Played", {title: "Intro", token: "spoofed", seconds: 12})')
    new = wait_calls(page, "mixpanel", lambda c: len(c) > len(before))[len(before):]
    assert new == [["track", "Video Played", {"title": "Intro", "seconds": 12}]]


def test_named_page_is_tracked_as_viewed_page(loaded):
    page, _ = loaded
    before = calls(page, "mixpanel")
    run(page, 'analytics.page("Docs", "Pricing", {plan: "pro"}); analytics.page()')
    wait_calls(page, "mixpanel", lambda c: len(c) > len(before))
    page.wait_for_timeout(100)  # the unnamed page() must not add a second event
    new = calls(page, "mixpanel")[len(before):]
    assert [c[:2] for c in new] == [["track", "Viewed Docs Pricing Page"]]
    assert new[0][2]["plan"] == "pro" and "/__loader_test_site__/" in new[0][2]["url"]


def test_identify_sets_id_super_properties_and_people(loaded):
    page, _ = loaded
    before = calls(page, "mixpanel")
    run(page, 'analytics.identify("u-42", {email: "ada@example.com", firstName: "Ada", plan: "pro"})')
    new = wait_calls(page, "mixpanel", lambda c: any(x[0] == "people.set" for x in c[len(before):]))[len(before):]
    assert ["identify", "u-42"] in new
    register = next(c for c in new if c[0] == "register")
    assert register[1]["email"] == "ada@example.com" and register[1]["plan"] == "pro"
    people = next(c for c in new if c[0] == "people.set")[1]
    assert people["$email"] == "ada@example.com" and people["$first_name"] == "Ada" and people["plan"] == "pro"


def test_alias(loaded):
    page, _ = loaded
    before = calls(page, "mixpanel")
    run(page, 'analytics.alias("new-id", "old-id")')
    new = wait_calls(page, "mixpanel", lambda c: len(c) > len(before))[len(before):]
    assert new == [["alias", "new-id", "old-id"]]


def test_group_sets_the_group_key(loaded):
    page, _ = loaded
    before = calls(page, "mixpanel")
    run(page, 'analytics.group("acme", {name: "Acme"})')
    new = wait_calls(page, "mixpanel", lambda c: len(c) > len(before))[len(before):]
    assert new == [["set_group", "company_id", ["acme"]]]


@pytest.mark.parametrize("name", ["Order Completed", "order_completed", "completed_order"])
def test_order_completed_tracks_a_charge(loaded, name):
    page, _ = loaded
    before = calls(page, "mixpanel")
    page.evaluate("n => analytics.track(n, {order_id: 'o1', total: 30, currency: 'EUR'})", name)
    new = wait_calls(page, "mixpanel", lambda c: len(c) > len(before) + 1)[len(before):]
    assert new == [["track", name, {"order_id": "o1", "total": 30, "currency": "EUR"}], ["people.track_charge", 30]]


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "mixpanel", 'analytics.track("Early Bird", {a: 1}); analytics.identify("early-user")',
        lambda c: ["track", "Early Bird", {"a": 1}] in c and ["identify", "early-user"] in c)
    assert recorded[0][:2] == ["init", TOKEN]


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "mixpanel")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "mixpanel", "hotjar", lambda c, marker: ["event", marker] in c)


def test_us_region_keeps_mixpanels_default_api_host(site, browser):
    row = site.destinations["mixpanel"]
    site.workspace.update(row["id"], {"region": "us"})
    context = browser.new_context()
    try:
        VendorRoutes().install(context)
        page = site.open(context)
        init = wait_calls(page, "mixpanel", lambda c: c and c[0][0] == "init")[0]
        assert init[1] == TOKEN and "api_host" not in init[2]
    finally:
        context.close()
        site.workspace.update(row["id"], {"region": "eu"})


def test_runs_as_an_analytics_next_remote_plugin(site, browser):
    """The same loader file, served to Segment's analytics-next through our settings document."""
    context = browser.new_context()
    try:
        routes = VendorRoutes().install(context)
        page = open_analytics_next(context, site, 'analytics.identify("next-user"); analytics.track("Next Event", {a: 1});')
        recorded = wait_calls(page, "mixpanel", lambda c: ["track", "Next Event", {"a": 1}] in c)
        assert recorded[0][:2] == ["init", TOKEN] and ["identify", "next-user"] in recorded
        wait_calls(page, "hotjar", lambda c: ["event", "Next Event"] in c)
        assert routes.requests["mixpanel"] == [URL]
    finally:
        context.close()

"""Amplitude's device-mode loader (Browser SDK 2) in real Chromium against a real server."""

from __future__ import annotations

import pytest
from loader_site import new_calls_of, page_fixture, site_fixture
from vendor_stubs import (
    VendorRoutes, calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable,
    open_analytics_next, run, wait_calls,
)

API_KEY = "fedcba9876543210fedcba9876543210"
URL = "https://cdn.amplitude.com/libs/analytics-browser-2.48.1-min.js.gz"


site = site_fixture("amplitude", {
    "amplitude": {"api_key": API_KEY, "region": "eu", "group_key": "account"},
    "hotjar": {"site_id": "1234567"},
})
page = page_fixture("amplitude", lambda c: c and c[0][0] == "init")
new_calls = new_calls_of("amplitude")


def test_script_requested_once_and_initialised_in_the_eu_without_autocapture(page):
    assert page.routes.requests["amplitude"] == [URL]
    init = calls(page, "amplitude")[0]
    assert init[:3] == ["init", API_KEY, None]
    assert init[3] == {"serverZone": "EU", "autocapture": False}


def test_track(page):
    assert new_calls(page, 'analytics.track("Song Played", {title: "Blue"})') == [["track", "Song Played", {"title": "Blue"}]]


def test_named_and_categorized_pages_become_viewed_page_events(page):
    before = len(calls(page, "amplitude"))
    new_calls(page, 'analytics.page("Docs", "Install"); analytics.page()')
    page.wait_for_timeout(100)  # the unnamed page must not be tracked (track_all_pages is off)
    new = calls(page, "amplitude")[before:]
    assert [c[:2] for c in new] == [["track", "Viewed Docs Install Page"]]
    assert new[0][2]["title"] == "Loader test"


def test_identify_sets_user_id_and_user_properties(page):
    new = new_calls(page, 'analytics.identify("u-7", {email: "ada@example.com", plan: "pro"})', 2)
    assert new[0] == ["setUserId", "u-7"]
    assert new[1][0] == "identify"
    assert ["set", "email", "ada@example.com"] in new[1][1] and ["set", "plan", "pro"] in new[1][1]


def test_group_sets_the_group_type(page):
    assert new_calls(page, 'analytics.group("acme")') == [["setGroup", "account", "acme"]]


def test_alias_is_not_sent_amplitude_has_no_alias(page):
    before = len(calls(page, "amplitude"))
    run(page, 'analytics.alias("a", "b"); analytics.track("After Alias")')
    new = wait_calls(page, "amplitude", lambda c: len(c) > before)[before:]
    assert new == [["track", "After Alias", {}]]


@pytest.mark.parametrize("name", ["Order Completed", "completed_order"])
def test_order_completed_logs_a_purchase_revenue(page, name):
    before = len(calls(page, "amplitude"))
    page.evaluate("n => analytics.track(n, {order_id: 'o9', total: 42.5, currency: 'EUR'})", name)
    new = wait_calls(page, "amplitude", lambda c: len(c) >= before + 2)[before:]
    assert new[0] == ["track", name, {"order_id": "o9", "total": 42.5, "currency": "EUR"}]
    assert new[1][0] == "revenue"
    ops = {op[0]: op[1:] for op in new[1][1]}
    assert ops["setPrice"] == [42.5] and ops["setRevenueType"] == ["Purchase"] and ops["setCurrency"] == ["EUR"]


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "amplitude",
        'analytics.track("Early Bird"); analytics.identify("early", {plan: "x"}); analytics.track("Order Completed", {revenue: 5})',
        lambda c: len(c) >= 6)
    names = [c[0] for c in recorded]
    assert names[0] == "init"
    assert ["track", "Early Bird", {}] in recorded and ["setUserId", "early"] in recorded
    identify = next(c for c in recorded if c[0] == "identify")
    assert ["set", "plan", "x"] in identify[1]
    revenue = next(c for c in recorded if c[0] == "revenue")
    assert ["setPrice", 5] in revenue[1]


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "amplitude")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "amplitude", "hotjar", lambda c, marker: ["event", marker] in c)


def test_autocapture_and_us_region_when_chosen(site, browser):
    row = site.destinations["amplitude"]
    site.workspace.update(row["id"], {"autocapture": True, "region": "us"})
    context = browser.new_context()
    try:
        VendorRoutes().install(context)
        page = site.open(context)
        init = wait_calls(page, "amplitude", lambda c: c and c[0][0] == "init")[0]
        assert init[3] == {"serverZone": "US", "autocapture": True}
    finally:
        context.close()
        site.workspace.update(row["id"], {"autocapture": None, "region": "eu"})


def test_runs_as_an_analytics_next_remote_plugin(site, browser):
    context = browser.new_context()
    try:
        VendorRoutes().install(context)
        page = open_analytics_next(context, site, 'analytics.track("Order Completed", {total: 9});')
        recorded = wait_calls(page, "amplitude", lambda c: any(x[0] == "revenue" for x in c))
        assert recorded[0][:2] == ["init", API_KEY]
        assert ["track", "Order Completed", {"total": 9}] in recorded
    finally:
        context.close()

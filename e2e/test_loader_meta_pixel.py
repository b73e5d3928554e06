"""The Meta Pixel loader (from the bundle issue) held to this issue's loader checks, in real Chromium."""

from __future__ import annotations

import pytest
from loader_site import new_calls_of, page_fixture, site_fixture
from vendor_stubs import (
    calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable, run, wait_calls,
)

PIXEL = "123456789012345"
URL = "https://connect.facebook.net/en_US/fbevents.js"
SPEC = {"Order Completed": "Purchase", "Product Added": "AddToCart", "Product Viewed": "ViewContent",
        "Product List Viewed": "ViewContent", "Products Searched": "Search", "Checkout Started": "InitiateCheckout"}


site = site_fixture("meta", {
    "meta_pixel": {"pixel_id": PIXEL, "standard_events": {"Demo Booked": "Lead"},
                   "access_token": "sentinel-capi-token"},
    "hotjar": {"site_id": "1234567"},
})
page = page_fixture("meta_pixel", lambda c: len(c) >= 2)
new_calls = new_calls_of("meta_pixel")


def test_script_requested_once_and_initialised_then_page_view(page):
    assert page.routes.requests["meta_pixel"] == [URL]
    recorded = calls(page, "meta_pixel")
    assert recorded[0] == ["init", PIXEL]
    assert recorded[1][:4] == ["trackSingle", PIXEL, "PageView", {}] and recorded[1][4]["eventID"]
    assert "sentinel-capi-token" not in page.content() + str(recorded)


def test_track_is_a_custom_event_with_the_message_id(page):
    [call] = new_calls(page, 'analytics.track("Video Played", {title: "Intro"})')
    assert call[:4] == ["trackSingleCustom", PIXEL, "Video Played", {"title": "Intro"}]
    assert call[4]["eventID"].startswith("sb-")


def test_user_mapped_event_is_a_standard_event(page):
    [call] = new_calls(page, 'analytics.track("Demo Booked")')
    assert call[:3] == ["trackSingle", PIXEL, "Lead"]


@pytest.mark.parametrize(("spec", "std"), SPEC.items(), ids=list(SPEC))
def test_spec_event_becomes_the_standard_event(page, spec, std):
    [call] = new_calls(page, f'analytics.track("{spec}", {{order_id: "o1", revenue: 20, query: "shoes", '
                             f'products: [{{product_id: "p1", price: 10, quantity: 2}}]}})')
    assert call[:3] == ["trackSingle", PIXEL, std]
    if std == "Search":
        assert call[3] == {"search_string": "shoes"}
    else:
        assert call[3]["content_ids"] == ["p1"] and call[3]["currency"] == "USD"


def test_purchase_value_and_contents(page):
    [call] = new_calls(page, 'analytics.track("completed_order", {revenue: 20, currency: "EUR",'
                             ' products: [{product_id: "p1", price: 10, quantity: 2}]})')
    assert call[3]["value"] == 20 and call[3]["currency"] == "EUR" and call[3]["num_items"] == 1
    assert call[3]["contents"] == [{"id": "p1", "quantity": 2, "item_price": 10}]


def test_identify_group_and_alias_are_not_sent_to_the_pixel(page):
    before = len(calls(page, "meta_pixel"))
    run(page, 'analytics.identify("u1"); analytics.group("g1"); analytics.alias("a", "b"); analytics.track("Marker")')
    new = wait_calls(page, "meta_pixel", lambda c: len(c) > before)[before:]
    assert [c[2] for c in new] == ["Marker"]


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "meta_pixel", 'analytics.track("Early Bird")',
        lambda c: any(x[:3] == ["trackSingleCustom", PIXEL, "Early Bird"] for x in c))
    assert recorded[0] == ["init", PIXEL]


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "meta_pixel")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "meta_pixel", "hotjar", lambda c, marker: ["event", marker] in c)

"""The GA4 loader (from the bundle issue) held to this issue's loader checks, in real Chromium."""

from __future__ import annotations

import pytest
from loader_site import new_calls_of, page_fixture, site_fixture
from vendor_stubs import calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable

MID = "G-ABC123XYZ9"
URL = "https://www.googletagmanager.com/gtag/js?id=G-ABC123XYZ9"
SPEC = {
    "Order Completed": "purchase", "Order Refunded": "refund", "Checkout Started": "begin_checkout",
    "Payment Info Entered": "add_payment_info", "Cart Viewed": "view_cart", "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart", "Product Viewed": "view_item", "Product Clicked": "select_item",
    "Product Added to Wishlist": "add_to_wishlist", "Product List Viewed": "view_item_list",
    "Products Searched": "search", "Promotion Viewed": "view_promotion", "Promotion Clicked": "select_promotion",
    "Signed Up": "sign_up", "Signed In": "login",
}


site = site_fixture("ga4", {
    "google_analytics_4": {"measurement_id": MID, "api_secret": "sentinel-mp-secret"},
    "hotjar": {"site_id": "1234567"},
})
page = page_fixture("google_analytics_4", lambda c: any(x[:2] == ["event", "page_view"] for x in c))
new_calls = new_calls_of("google_analytics_4")


def test_script_requested_once_and_configured_without_its_own_page_view(page):
    assert page.routes.requests["google_analytics_4"] == [URL]
    recorded = calls(page, "google_analytics_4")
    assert recorded[0][0] == "js"
    assert recorded[1] == ["config", MID, {"send_page_view": False, "cookie_domain": "auto"}]
    assert "sentinel-mp-secret" not in page.content() + str(recorded)


def test_page_is_a_page_view(page):
    [call] = new_calls(page, 'analytics.page("Pricing")')
    assert call[:2] == ["event", "page_view"]
    assert call[2]["page_title"] == "Loader test" and "/__loader_test_site__/" in call[2]["page_location"]


def test_track_is_an_event_with_scalar_parameters(page):
    assert new_calls(page, 'analytics.track("Video Played", {title: "Intro", tags: ["a"]})') == [
        ["event", "Video_Played", {"title": "Intro", "send_to": MID}]]


def test_identify_sets_the_user_id_and_user_properties(page):
    new = new_calls(page, 'analytics.identify("u-1", {plan: "pro"})', 2)
    assert new[0] == ["config", MID, {"user_id": "u-1", "send_page_view": False}]
    assert new[1][:2] == ["set", "user_properties"] and new[1][2]["plan"] == "pro"


def test_group_is_join_group(page):
    assert new_calls(page, 'analytics.group("g-1")') == [["event", "join_group", {"group_id": "g-1", "send_to": MID}]]


@pytest.mark.parametrize(("spec", "ga4"), SPEC.items(), ids=list(SPEC))
def test_spec_event_becomes_the_recommended_event(page, spec, ga4):
    [call] = new_calls(page, f'analytics.track("{spec}", {{order_id: "o1", total: 12.5, currency: "EUR", '
                             f'query: "shoes", products: [{{product_id: "p1", price: 12.5, quantity: 1}}]}})')
    assert call[:2] == ["event", ga4] and call[2]["send_to"] == MID


def test_purchase_carries_the_order(page):
    [call] = new_calls(page, 'analytics.track("order_completed", {order_id: "o1", total: 30, currency: "EUR",'
                             ' products: [{product_id: "p1", name: "Shoe", price: 15, quantity: 2}]})')
    assert call[1] == "purchase"
    assert call[2]["transaction_id"] == "o1" and call[2]["value"] == 30 and call[2]["currency"] == "EUR"
    assert call[2]["items"] == [{"item_id": "p1", "item_name": "Shoe", "price": 15, "quantity": 2}]


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "google_analytics_4", 'analytics.track("Early Bird")',
        lambda c: ["event", "Early_Bird", {"send_to": MID}] in c)
    assert recorded[1][:2] == ["config", MID]


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "google_analytics_4")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "google_analytics_4", "hotjar", lambda c, marker: ["event", marker] in c)

"""GA4 Measurement Protocol translator: exact requests to a local server posing as google-analytics.com."""

from __future__ import annotations

import pytest

from delivery_vendor import Vendor, make_event, send
from server.destinations.google_analytics_4 import cloud

SETTINGS = {"measurement_id": "G-TEST123", "api_secret": "mp-secret", "send_user_id": True}
TS_MICROS = 1772600767123000  # 2026-03-04T05:06:07.123Z

PRODUCT = {"product_id": "p-1", "sku": "SKU-1", "name": "Tee", "brand": "Acme", "category": "Shirts",
           "variant": "red", "price": 19.5, "quantity": 2, "coupon": "TEN", "position": 3}
ITEM = {"item_id": "p-1", "item_name": "Tee", "item_brand": "Acme", "item_category": "Shirts", "item_variant": "red",
        "price": 19.5, "quantity": 2, "coupon": "TEN", "index": 3}


def deliver(event, settings=SETTINGS):
    with Vendor() as ga:
        outcome = send(cloud.translate(event, settings), {"www.google-analytics.com": ga.url})
        assert outcome.outcome == "delivered"
        requests = ga.snapshot()
    assert len(requests) == 1
    got = requests[0]
    assert (got.method, got.path) == ("POST", "/mp/collect")
    assert got.query == {"measurement_id": "G-TEST123", "api_secret": "mp-secret"}
    assert got.headers["content-type"] == "application/json"
    return got.json()


def test_page_becomes_page_view_with_location_referrer_and_title():
    body = deliver(make_event("page", userId="u-1", name="Cart", properties={}))
    assert body == {
        "client_id": "anon-12345", "user_id": "u-1", "timestamp_micros": TS_MICROS,
        "events": [{"name": "page_view", "params": {
            "page_location": "https://shop.example/cart", "page_referrer": "https://search.example/",
            "page_title": "Cart", "engagement_time_msec": 1}}],
    }


def test_send_user_id_off_keeps_the_user_id_out():
    body = deliver(make_event("page", userId="u-1"), {**SETTINGS, "send_user_id": False})
    assert "user_id" not in body and body["client_id"] == "anon-12345"


def test_order_completed_is_a_purchase_with_items():
    props = {"order_id": "o-9", "affiliation": "web", "total": 44.0, "revenue": 39.0, "currency": "EUR", "tax": 3,
             "shipping": 2, "coupon": "TEN", "products": [PRODUCT, {"product_id": "p-2", "name": "Cap", "price": 5}]}
    body = deliver(make_event("track", event="Order Completed", properties=props))
    assert body["events"] == [{"name": "purchase", "params": {
        "transaction_id": "o-9", "affiliation": "web", "value": 44.0, "currency": "EUR", "tax": 3, "shipping": 2,
        "coupon": "TEN", "items": [ITEM, {"item_id": "p-2", "item_name": "Cap", "price": 5}],
        "engagement_time_msec": 1}}]


@pytest.mark.parametrize("spec, ga", [
    ("Product Added", "add_to_cart"), ("Product Removed", "remove_from_cart"), ("Product Viewed", "view_item"),
    ("Product Clicked", "select_item"), ("Product Added to Wishlist", "add_to_wishlist"),
])
def test_single_product_events_carry_the_product_as_their_one_item(spec, ga):
    body = deliver(make_event("track", event=spec, properties={**PRODUCT, "currency": "USD"}))
    [event] = body["events"]
    assert event["name"] == ga and event["params"]["items"] == [ITEM]
    if ga != "select_item":
        assert event["params"]["currency"] == "USD" and event["params"]["value"] == 19.5


@pytest.mark.parametrize("spec, ga, props, params", [
    ("Product List Viewed", "view_item_list", {"list_id": "l1", "category": "Deals", "products": [PRODUCT]},
     {"item_list_id": "l1", "item_list_name": "Deals", "items": [ITEM]}),
    ("Cart Viewed", "view_cart", {"cart_id": "c", "value": 39, "currency": "USD", "products": [PRODUCT]},
     {"value": 39, "currency": "USD", "items": [ITEM]}),
    ("Checkout Started", "begin_checkout", {"value": 39, "currency": "USD", "coupon": "TEN", "products": [PRODUCT]},
     {"value": 39, "currency": "USD", "coupon": "TEN", "items": [ITEM]}),
    ("Payment Info Entered", "add_payment_info", {"payment_method": "card", "value": 10, "currency": "USD"},
     {"payment_type": "card", "value": 10, "currency": "USD"}),
    ("Order Refunded", "refund", {"order_id": "o-9", "total": 44, "currency": "EUR"},
     {"transaction_id": "o-9", "value": 44, "currency": "EUR"}),
    ("Products Searched", "search", {"query": "red tee"}, {"search_term": "red tee"}),
    ("Promotion Viewed", "view_promotion", {"promotion_id": "pr", "name": "Sale", "creative": "b1", "position": "top"},
     {"promotion_id": "pr", "promotion_name": "Sale", "creative_name": "b1", "creative_slot": "top"}),
    ("Promotion Clicked", "select_promotion", {"promotion_id": "pr", "name": "Sale"},
     {"promotion_id": "pr", "promotion_name": "Sale"}),
    ("Signed Up", "sign_up", {"type": "google"}, {"method": "google"}),
    ("Signed In", "login", {"type": "password"}, {"method": "password"}),
])
def test_spec_events_map_to_ga4_recommended_events(spec, ga, props, params):
    body = deliver(make_event("track", event=spec, properties=props))
    assert body["events"] == [{"name": ga, "params": {**params, "engagement_time_msec": 1}}]


def test_other_tracks_are_custom_events_with_scalar_params_only():
    body = deliver(make_event("track", event="  Video  Played Fully ", properties={"seconds": 30, "hd": True,
                                                                                 "tags": ["a"], "meta": {"x": 1}}))
    assert body["events"] == [{"name": "Video_Played_Fully", "params": {"seconds": 30, "hd": True,
                                                                         "engagement_time_msec": 1}}]


def test_identify_sends_user_properties_and_group_is_join_group():
    body = deliver(make_event("identify", userId="u-1", traits={"plan": "pro", "seats": 4, "address": {"c": "x"}}))
    assert body["user_properties"] == {"plan": {"value": "pro"}, "seats": {"value": 4}}
    assert body["events"] == []
    body = deliver(make_event("group", userId="u-1", groupId="acme"))
    assert body["events"] == [{"name": "join_group", "params": {"group_id": "acme", "engagement_time_msec": 1}}]


def test_the_api_secret_is_redacted_from_the_stored_attempt():
    with Vendor() as ga:
        outcome = send(cloud.translate(make_event("page"), SETTINGS), {"www.google-analytics.com": ga.url})
    assert "mp-secret" not in outcome.attempts[0].request["url"]

"""Meta Conversions API translator (cloud mode of meta_pixel) against a local graph.facebook.com."""

from __future__ import annotations

import hashlib

from delivery_vendor import Vendor, make_event, send
from server.destinations.meta_pixel import cloud

SETTINGS = {"pixel_id": "123456789", "access_token": "EAAB-token", "value_field": "revenue",
            "standard_events": {"Trial Started": "StartTrial"}}


def deliver(event, settings=SETTINGS):
    with Vendor() as graph:
        outcome = send(cloud.translate(event, settings), {"graph.facebook.com": graph.url})
        assert outcome.outcome == "delivered"
        [got] = graph.snapshot()
    assert (got.method, got.path, got.query) == ("POST", "/v21.0/123456789/events", {"access_token": "EAAB-token"})
    assert "EAAB-token" not in outcome.attempts[0].request["url"]
    [item] = got.json()["data"]
    return item


def test_page_is_a_page_view_deduped_with_the_pixel_by_message_id():
    item = deliver(make_event("page", messageId="m-1", userId="u-1", context={
        "ip": "1.2.3.4", "userAgent": "UA", "page": {"url": "https://shop.test/"}, "traits": {"email": " A@B.test"}}))
    assert item == {"event_name": "PageView", "event_time": 1772600767, "event_id": "m-1", "action_source": "website",
                    "user_data": {"client_ip_address": "1.2.3.4", "client_user_agent": "UA",
                                  "em": [hashlib.sha256(b"a@b.test").hexdigest()],
                                  "external_id": [hashlib.sha256(b"u-1").hexdigest()]},
                    "event_source_url": "https://shop.test/"}


def test_order_completed_is_a_purchase_with_contents():
    item = deliver(make_event("track", event="Order Completed", properties={
        "order_id": "o-1", "revenue": 30, "currency": "EUR",
        "products": [{"product_id": "p1", "quantity": 2, "price": 10}, {"product_id": "p2", "price": 10}]}))
    assert item["event_name"] == "Purchase"
    assert item["custom_data"] == {"value": 30, "currency": "EUR", "content_ids": ["p1", "p2"], "content_type": "product",
                                   "contents": [{"id": "p1", "quantity": 2, "item_price": 10},
                                                {"id": "p2", "quantity": 1, "item_price": 10}],
                                   "num_items": 3, "order_id": "o-1"}


def test_standard_event_map_search_and_custom_events():
    assert deliver(make_event("track", event="Trial Started"))["event_name"] == "StartTrial"
    item = deliver(make_event("track", event="Products Searched", properties={"query": "tee"}))
    assert (item["event_name"], item["custom_data"]) == ("Search", {"search_string": "tee"})
    assert deliver(make_event("track", event="Level Up"))["event_name"] == "Level Up"
    assert cloud.translate(make_event("identify", userId="u"), SETTINGS) == []

"""Meta Conversions API: ``POST https://graph.facebook.com/v21.0/{pixel_id}/events?access_token=…``.

The same mapping as the browser pixel, so the two dedupe on ``event_id`` = messageId (the pixel
sends it as ``eventID``): page → ``PageView``; Order Completed → ``Purchase``; Product Added →
``AddToCart``; Product Viewed / Product List Viewed → ``ViewContent``; Products Searched →
``Search``; Checkout Started → ``InitiateCheckout``; events named in ``standard_events`` → that
standard event; any other track → a custom event of the same name. ``user_data`` identifiers are
SHA-256 hashed as Meta requires (email lower-cased first).
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode

from server.destinations.request import OutgoingRequest, context, event_time, properties, traits, user_id

BASE = "https://graph.facebook.com/v21.0"
STANDARD = {
    "Order Completed": "Purchase", "Product Added": "AddToCart", "Product Viewed": "ViewContent",
    "Product List Viewed": "ViewContent", "Products Searched": "Search", "Checkout Started": "InitiateCheckout",
}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def custom_data(event: dict[str, Any], name: str, settings: dict[str, Any]) -> dict[str, Any]:
    props = properties(event)
    data: dict[str, Any] = {}
    value = props.get(settings.get("value_field") or "revenue")
    if isinstance(value, (int, float)):
        data["value"] = value
        data["currency"] = props.get("currency") or "USD"
    products = props.get("products") if isinstance(props.get("products"), list) else None
    if products is None and props.get("product_id"):
        products = [props]
    if products:
        data["content_ids"] = [str(p.get("product_id") or p.get("sku")) for p in products if isinstance(p, dict)]
        data["contents"] = [{"id": str(p.get("product_id") or p.get("sku")), "quantity": p.get("quantity", 1),
                             "item_price": p.get("price")} for p in products if isinstance(p, dict)]
        data["content_type"] = "product"
        data["num_items"] = sum(int(p.get("quantity") or 1) for p in products if isinstance(p, dict))
    if name == "Search" and props.get("query"):
        data["search_string"] = props["query"]
    if props.get("order_id"):
        data["order_id"] = str(props["order_id"])
    return data


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    kind = event.get("type")
    if kind == "page":
        name = "PageView"
    elif kind == "track" and event.get("event"):
        mapped = (settings.get("standard_events") or {}).get(event["event"])
        name = str(mapped) if mapped else STANDARD.get(event["event"], event["event"])
    else:
        return []
    ctx = context(event)
    user: dict[str, Any] = {}
    if ctx.get("ip"):
        user["client_ip_address"] = ctx["ip"]
    if ctx.get("userAgent"):
        user["client_user_agent"] = ctx["userAgent"]
    email = traits(event).get("email")
    if isinstance(email, str) and email:
        user["em"] = [sha256(email.strip().lower())]
    if user_id(event):
        user["external_id"] = [sha256(user_id(event))]
    item: dict[str, Any] = {
        "event_name": name, "event_time": int(event_time(event).timestamp()), "event_id": event.get("messageId"),
        "action_source": "website", "user_data": user,
    }
    url = properties(event).get("url") or (ctx.get("page") or {}).get("url")
    if url:
        item["event_source_url"] = url
    data = custom_data(event, name, settings) if kind == "track" else {}
    if data:
        item["custom_data"] = data
    token = settings["access_token"]
    query = urlencode({"access_token": token})
    return [OutgoingRequest("POST", f"{BASE}/{settings['pixel_id']}/events?{query}",
                            {"Content-Type": "application/json"}, json={"data": [item]},
                            idempotency_key=event.get("messageId"), secrets=(token,))]

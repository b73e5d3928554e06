"""Google Analytics 4 Measurement Protocol: ``POST /mp/collect?measurement_id=…&api_secret=…``.

``client_id`` is the anonymousId (else the userId); ``user_id`` is sent when ``send_user_id``.
Spec e-commerce events map to GA4's recommended events with ``items``; page → ``page_view``;
identify → ``user_properties`` only; group → ``join_group``. Any other track is a custom event
(trimmed, whitespace → ``_``, at most 40 characters). GA4 has no dedupe key.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from server.destinations.request import (
    OutgoingRequest, anonymous_id, context, event_time, properties, scalars, traits, user_id,
)

BASE = "https://www.google-analytics.com/mp/collect"
MAX_PARAMS = 25

# Segment Spec event → (GA4 event, {GA4 param: Spec property})
EVENTS: dict[str, tuple[str, dict[str, str]]] = {
    "Order Completed": ("purchase", {"transaction_id": "order_id", "affiliation": "affiliation", "value": "total",
                                     "currency": "currency", "tax": "tax", "shipping": "shipping", "coupon": "coupon"}),
    "Product Added": ("add_to_cart", {"currency": "currency", "value": "value"}),
    "Product Removed": ("remove_from_cart", {"currency": "currency", "value": "value"}),
    "Product Viewed": ("view_item", {"currency": "currency", "value": "value"}),
    "Product List Viewed": ("view_item_list", {"item_list_id": "list_id", "item_list_name": "category"}),
    "Product Clicked": ("select_item", {"item_list_id": "list_id", "item_list_name": "category"}),
    "Cart Viewed": ("view_cart", {"currency": "currency", "value": "value"}),
    "Checkout Started": ("begin_checkout", {"currency": "currency", "value": "value", "coupon": "coupon"}),
    "Payment Info Entered": ("add_payment_info", {"payment_type": "payment_method", "currency": "currency",
                                                  "value": "value", "coupon": "coupon"}),
    "Order Refunded": ("refund", {"transaction_id": "order_id", "value": "total", "currency": "currency"}),
    "Products Searched": ("search", {"search_term": "query"}),
    "Promotion Viewed": ("view_promotion", {"promotion_id": "promotion_id", "promotion_name": "name",
                                            "creative_name": "creative", "creative_slot": "position"}),
    "Promotion Clicked": ("select_promotion", {"promotion_id": "promotion_id", "promotion_name": "name",
                                               "creative_name": "creative", "creative_slot": "position"}),
    "Product Added to Wishlist": ("add_to_wishlist", {"currency": "currency", "value": "value"}),
    "Signed Up": ("sign_up", {"method": "type"}),
    "Signed In": ("login", {"method": "type"}),
}
# Events about one product carry it in their own properties.
SINGLE_PRODUCT = {"Product Added", "Product Removed", "Product Viewed", "Product Clicked", "Product Added to Wishlist"}
ITEM_FIELDS = {"item_id": "product_id", "item_name": "name", "item_brand": "brand", "item_category": "category",
               "item_variant": "variant", "price": "price", "quantity": "quantity", "coupon": "coupon",
               "index": "position"}


def item(product: dict[str, Any]) -> dict[str, Any]:
    result = {ga: product[spec] for ga, spec in ITEM_FIELDS.items() if product.get(spec) not in (None, "")}
    if "item_id" not in result and product.get("sku"):
        result["item_id"] = product["sku"]
    return result


def items(name: str, props: dict[str, Any]) -> list[dict[str, Any]] | None:
    if name in SINGLE_PRODUCT:
        return [item(props)]
    products = props.get("products")
    if isinstance(products, list):
        return [item(p) for p in products if isinstance(p, dict)]
    return None


def custom_name(name: str) -> str:
    return re.sub(r"\s+", "_", name.strip())[:40]


def _params(base: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in base.items() if v is not None and (k == "items" or isinstance(v, (str, int, float, bool)))}
    params.setdefault("engagement_time_msec", 1)
    return dict(list(params.items())[:MAX_PARAMS])


def ga_event(event: dict[str, Any]) -> dict[str, Any] | None:
    kind, props = event.get("type"), properties(event)
    if kind == "page":
        page = context(event).get("page") or {}
        return {"name": "page_view", "params": _params({
            "page_location": props.get("url") or page.get("url"),
            "page_referrer": props.get("referrer") or page.get("referrer"),
            "page_title": props.get("title") or page.get("title"),
        })}
    if kind == "group":
        return {"name": "join_group", "params": _params({"group_id": event.get("groupId")})}
    if kind != "track":
        return None
    name = str(event.get("event") or "")
    if name in EVENTS:
        ga_name, mapping = EVENTS[name]
        params = {ga: props.get(spec) for ga, spec in mapping.items()}
        if ga_name == "purchase" and params.get("value") is None:
            params["value"] = props.get("revenue") if props.get("revenue") is not None else props.get("value")
        if params.get("value") is None and name in SINGLE_PRODUCT and props.get("price") is not None:
            params["value"] = props.get("price")
        found = items(name, props)
        if found is not None:
            params["items"] = found
        return {"name": ga_name, "params": _params(params)}
    return {"name": custom_name(name), "params": _params(scalars(props))}


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    body: dict[str, Any] = {"client_id": anonymous_id(event) or user_id(event)}
    if settings.get("send_user_id", True) and user_id(event):
        body["user_id"] = user_id(event)
    body["timestamp_micros"] = int(event_time(event).timestamp() * 1_000_000)
    if event.get("type") == "identify":
        body["user_properties"] = {k: {"value": v} for k, v in scalars(traits(event)).items() if v is not None}
        body["events"] = []
        if not body["user_properties"]:
            return []
    else:
        found = ga_event(event)
        if found is None:
            return []
        body["events"] = [found]
    if not body["client_id"]:
        return []
    query = urlencode({"measurement_id": settings["measurement_id"], "api_secret": settings["api_secret"]})
    return [OutgoingRequest("POST", f"{BASE}?{query}", {"Content-Type": "application/json"}, json=body,
                            idempotency_key=event.get("messageId"), secrets=(settings["api_secret"],))]

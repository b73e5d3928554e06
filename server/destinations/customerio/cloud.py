"""Customer.io Track API v2: ``POST /api/v2/entity`` with Basic ``site_id:api_key``.

identify → person identify (attributes = traits); track → person event (``id`` = messageId,
so Customer.io dedupes retries); page/screen → person page/screen; group → object identify with
a relationship to the user; alias → person merge. Identifiers: a ``cio_``-prefixed userId →
``cio_id``; an email-shaped one → ``email``; otherwise ``id``; without a userId the email
trait, then ``anonymous_id``. ISO dates become unix seconds.
"""

from __future__ import annotations

import re
from typing import Any

from server.destinations.request import (
    OutgoingRequest, anonymous_id, basic_auth, context, event_time, parse_time, properties, traits, user_id,
)

HOSTS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def identifiers(event: dict[str, Any]) -> dict[str, str] | None:
    uid = user_id(event)
    if uid:
        if uid.startswith("cio_"):
            return {"cio_id": uid[4:]}
        if EMAIL.match(uid):
            return {"email": uid}
        return {"id": uid}
    email = traits(event).get("email")
    if isinstance(email, str) and EMAIL.match(email):
        return {"email": email}
    if anonymous_id(event):
        return {"anonymous_id": anonymous_id(event)}
    return None


def unix_dates(data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        parsed = parse_time(value) if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-" else None
        out[key] = int(parsed.timestamp()) if parsed else value
    return out


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    kind = event.get("type")
    ids = identifiers(event)
    when = int(event_time(event).timestamp())
    body: dict[str, Any] | None = None
    if kind == "identify" and ids:
        body = {"type": "person", "action": "identify", "identifiers": ids, "attributes": unix_dates(traits(event)),
                "timestamp": when}
    elif kind == "track" and ids:
        body = {"type": "person", "action": "event", "identifiers": ids, "name": event.get("event"),
                "id": event.get("messageId"), "attributes": unix_dates(properties(event)), "timestamp": when}
    elif kind in ("page", "screen") and ids:
        page = context(event).get("page") or {}
        name = properties(event).get("url") or page.get("url") or event.get("name") if kind == "page" else event.get("name")
        body = {"type": "person", "action": kind, "identifiers": ids, "name": name or "",
                "id": event.get("messageId"), "attributes": unix_dates(properties(event)), "timestamp": when}
    elif kind == "group" and event.get("groupId"):
        body = {"type": "object", "action": "identify",
                "identifiers": {"object_type_id": "1", "object_id": str(event["groupId"])},
                "attributes": unix_dates(traits(event)), "timestamp": when}
        if ids:
            body["cio_relationships"] = [{"identifiers": ids}]
    elif kind == "alias" and user_id(event) and event.get("previousId"):
        body = {"type": "person", "action": "merge", "primary": {"id": user_id(event)},
                "secondary": {"id": str(event["previousId"])}, "timestamp": when}
    if body is None:
        return []
    base = HOSTS.get(settings.get("region") or "us", HOSTS["us"])
    auth = basic_auth(settings["site_id"], settings["api_key"])
    return [OutgoingRequest("POST", f"{base}/api/v2/entity", {"Authorization": auth, "Content-Type": "application/json"},
                            json=body, idempotency_key=event.get("messageId"),
                            secrets=(settings["site_id"], settings["api_key"]))]

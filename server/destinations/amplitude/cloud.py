"""Amplitude HTTP V2 API: events to ``/2/httpapi`` (``insert_id`` = messageId), identify to
``/identify``, group to ``/groupidentify`` (plus the user's ``groups``), alias to ``/usermap``.
page/screen → "Viewed {name}".
"""

from __future__ import annotations

from typing import Any

import orjson

from server.destinations.request import (
    OutgoingRequest, anonymous_id, context, event_time, page_name, properties, traits, user_id,
)

HOSTS = {"us": "https://api2.amplitude.com", "eu": "https://api.eu.amplitude.com"}
GROUP_TYPE = "company"


def _base(settings: dict[str, Any]) -> str:
    return HOSTS.get(settings.get("region") or "us", HOSTS["us"])


def device_id(event: dict[str, Any]) -> str | None:
    device = context(event).get("device") or {}
    return device.get("id") or anonymous_id(event)


def _ids(event: dict[str, Any]) -> dict[str, Any]:
    ids = {}
    if user_id(event):
        ids["user_id"] = user_id(event)
    if device_id(event):
        ids["device_id"] = device_id(event)
    return ids


def _event(event: dict[str, Any], name: str) -> dict[str, Any]:
    ctx = context(event)
    out: dict[str, Any] = {
        **_ids(event), "event_type": name, "time": int(event_time(event).timestamp() * 1000),
        "event_properties": properties(event), "insert_id": event.get("messageId"), "library": "switchboard",
    }
    if ctx.get("ip"):
        out["ip"] = ctx["ip"]
    user_traits = ctx.get("traits")
    if isinstance(user_traits, dict) and user_traits:
        out["user_properties"] = {"$set": user_traits}
    session = (ctx.get("sessionId") or (ctx.get("amplitude") or {}).get("session_id")) if isinstance(ctx, dict) else None
    if isinstance(session, int):
        out["session_id"] = session
    return out


def _form(settings: dict[str, Any], path: str, field: str, value: Any, key: str | None) -> OutgoingRequest:
    return OutgoingRequest("POST", f"{_base(settings)}{path}", {},
                           form={"api_key": settings["api_key"], field: orjson.dumps(value).decode()},
                           idempotency_key=key)


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    kind = event.get("type")
    key = event.get("messageId")
    if not _ids(event) and kind != "alias":
        return []
    if kind in ("track", "page", "screen"):
        name = str(event.get("event") or "") if kind == "track" else page_name(event, kind)
        body = {"api_key": settings["api_key"], "events": [_event(event, name)], "options": {"min_id_length": 1}}
        return [OutgoingRequest("POST", f"{_base(settings)}/2/httpapi",
                                {"Content-Type": "application/json", "Accept": "*/*"}, json=body, idempotency_key=key)]
    if kind == "identify":
        return [_form(settings, "/identify", "identification",
                      [{**_ids(event), "user_properties": {"$set": traits(event)}}], key)]
    if kind == "group":
        group_id = event.get("groupId")
        if not group_id:
            return []
        return [
            _form(settings, "/groupidentify", "identification", [{
                "group_type": GROUP_TYPE, "group_value": str(group_id), "group_properties": {"$set": traits(event)},
            }], key),
            _form(settings, "/identify", "identification", [{**_ids(event), "groups": {GROUP_TYPE: str(group_id)}}], key),
        ]
    if kind == "alias":
        previous = event.get("previousId")
        if not previous or not user_id(event):
            return []
        return [_form(settings, "/usermap", "mapping", [{"user_id": str(previous), "global_user_id": user_id(event)}], key)]
    return []

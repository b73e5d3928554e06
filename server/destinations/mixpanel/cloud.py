"""Mixpanel: events through ``/import`` (Basic auth with the API secret), profiles and groups
through ``/engage`` and ``/groups`` (form ``data=<json>`` with the project token).

track → ``/import?strict=1`` (``$insert_id`` = messageId); page/screen → "Viewed {name}";
identify → ``$identify`` via ``/track`` when an anonymous id is being joined to a user id, and
``/engage $set`` when "Update user profiles" is on; group → ``/groups $set``; alias →
``$create_alias`` via ``/track``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from server.destinations.request import (
    OutgoingRequest, anonymous_id, basic_auth, context, event_time, page_name, properties, traits, user_id,
)

HOSTS = {"us": "https://api.mixpanel.com", "eu": "https://api-eu.mixpanel.com", "in": "https://api-in.mixpanel.com"}
# Segment trait → Mixpanel reserved profile property
PROFILE = {"email": "$email", "firstName": "$first_name", "lastName": "$last_name", "name": "$name",
           "username": "$username", "phone": "$phone", "createdAt": "$created", "avatar": "$avatar"}
_INSERT_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")


def insert_id(message_id: str) -> str:
    """messageId itself when Mixpanel accepts it (≤36 of [A-Za-z0-9-]); else its md5, still stable."""
    return message_id if _INSERT_ID.match(message_id) else hashlib.md5(message_id.encode()).hexdigest()


def _base(settings: dict[str, Any]) -> str:
    return HOSTS.get(settings.get("region") or "us", HOSTS["us"])


def distinct_id(event: dict[str, Any]) -> str:
    return user_id(event) or anonymous_id(event) or ""


def event_properties(event: dict[str, Any]) -> dict[str, Any]:
    ctx = context(event)
    page = ctx.get("page") or {}
    props: dict[str, Any] = {
        "time": int(event_time(event).timestamp() * 1000),
        "distinct_id": distinct_id(event),
        "$insert_id": insert_id(str(event.get("messageId", ""))),
    }
    if anonymous_id(event):
        props["$device_id"] = anonymous_id(event)
    if user_id(event):
        props["$user_id"] = user_id(event)
    if page.get("url"):
        props["$current_url"] = page["url"]
    if ctx.get("ip"):
        props["ip"] = ctx["ip"]
    campaign = ctx.get("campaign") or {}
    for key in ("source", "medium", "name", "term", "content"):
        if campaign.get(key):
            props["utm_campaign" if key == "name" else f"utm_{key}"] = campaign[key]
    props.update(properties(event))
    return props


def _import(event: dict[str, Any], name: str, settings: dict[str, Any]) -> OutgoingRequest:
    secret = settings["api_secret"]
    return OutgoingRequest(
        "POST", f"{_base(settings)}/import?strict=1",
        {"Authorization": basic_auth(secret, ""), "Content-Type": "application/json", "Accept": "application/json"},
        json=[{"event": name, "properties": event_properties(event)}],
        idempotency_key=insert_id(str(event.get("messageId", ""))), secrets=(secret,),
    )


def _form(settings: dict[str, Any], path: str, data: list[dict[str, Any]], key: str | None) -> OutgoingRequest:
    return OutgoingRequest("POST", f"{_base(settings)}{path}", {"Accept": "text/plain"},
                           form={"data": orjson.dumps(data).decode()}, idempotency_key=key)


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    kind = event.get("type")
    token = settings["token"]
    key = insert_id(str(event.get("messageId", "")))
    if kind == "track":
        return [_import(event, str(event.get("event") or ""), settings)]
    if kind in ("page", "screen"):
        return [_import(event, page_name(event, kind), settings)]
    if kind == "identify":
        requests = []
        if user_id(event) and anonymous_id(event):
            requests.append(_form(settings, "/track", [{"event": "$identify", "properties": {
                "token": token, "distinct_id": user_id(event), "$identified_id": user_id(event),
                "$anon_id": anonymous_id(event), "$insert_id": key,
                "time": int(event_time(event).timestamp() * 1000)}}], key))
        if settings.get("people") and distinct_id(event):
            found = traits(event)
            values = {PROFILE.get(k, k): v for k, v in found.items()}
            update = {"$token": token, "$distinct_id": distinct_id(event), "$set": values}
            if context(event).get("ip"):
                update["$ip"] = context(event)["ip"]
            requests.append(_form(settings, "/engage", [update], key))
        return requests
    if kind == "group":
        group_id = event.get("groupId")
        if not group_id:
            return []
        return [_form(settings, "/groups", [{
            "$token": token, "$group_key": "company", "$group_id": str(group_id), "$set": traits(event),
        }], key)]
    if kind == "alias":
        previous = event.get("previousId")
        if not previous or not user_id(event):
            return []
        return [_form(settings, "/track", [{"event": "$create_alias", "properties": {
            "token": token, "distinct_id": str(previous), "alias": user_id(event), "$insert_id": key}}], key)]
    return []

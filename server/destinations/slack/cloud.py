"""Slack incoming webhook: ``POST {webhook_url}`` with ``{"text": …}`` (+ channel, username, icon).

Messages come from per-event templates rendered in a bounded Jinja2 sandbox (``sandbox.py``:
no Python internals, and budgets for arithmetic, sizes, loops and time) over the event (``name``, ``event``, ``properties``, ``traits``, ``userId`` … are available). With no
templates set, every track posts the default "{{name}} did {{event}}."; once templates are set
only the events named there post (``identify`` for identify calls). Rendered values are escaped
the way Slack asks (&, <, >), so an event cannot inject mentions or links.
"""

from __future__ import annotations

from typing import Any

from server.destinations.request import OutgoingRequest, anonymous_id, traits, user_id
from server.destinations.slack import sandbox

DEFAULT_TEMPLATE = "{{name}} did {{event}}."


def display_name(event: dict[str, Any]) -> str:
    found = traits(event)
    if found.get("name"):
        return str(found["name"])
    full = " ".join(str(found[k]) for k in ("firstName", "lastName") if found.get(k))
    if full:
        return full
    for key in ("username", "email"):
        if found.get(key):
            return str(found[key])
    if user_id(event):
        return f"User {user_id(event)}"
    return f"Anonymous user {anonymous_id(event) or ''}".strip()


def render(template: str, event: dict[str, Any]) -> str:
    variables = {**event, "name": display_name(event), "event": event.get("event") or event.get("type"),
                 "properties": event.get("properties") or {}, "traits": traits(event)}
    return sandbox.render(template, variables)


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    templates = settings.get("templates") or {}
    key = event.get("event") if event.get("type") == "track" else event.get("type")
    if templates:
        template = templates.get(str(key))
        if template is None:
            return []
    elif event.get("type") == "track":
        template = DEFAULT_TEMPLATE
    else:
        return []
    body: dict[str, Any] = {"text": render(str(template), event)}
    if settings.get("channel"):
        body["channel"] = settings["channel"]
    if settings.get("username"):
        body["username"] = settings["username"]
    icon = settings.get("icon")
    if icon:
        body["icon_emoji" if str(icon).startswith(":") else "icon_url"] = icon
    url = settings["webhook_url"]
    return [OutgoingRequest("POST", url, {"Content-Type": "application/json"}, json=body,
                            idempotency_key=event.get("messageId"), secrets=(url.rsplit("/", 1)[-1],))]

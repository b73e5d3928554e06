"""Mailchimp Marketing API: identify with an email → upsert the audience member.

``PUT https://{dc}.api.mailchimp.com/3.0/lists/{list_id}/members/{md5(lower(email))}`` with
``email_address``, ``status_if_new`` ("subscribed", or "pending" with double opt-in) and merge
fields. ``status`` is never sent, so an existing member — in particular one who unsubscribed —
keeps their status: we never re-subscribe anyone. Traits become merge tags (upper-cased, ``_``
removed, first 10 characters; FNAME/LNAME for first and last name); booleans and nulls become text.
"""

from __future__ import annotations

import hashlib
from typing import Any

from server.destinations.request import OutgoingRequest, basic_auth, traits

NAMED = {"firstName": "FNAME", "lastName": "LNAME", "first_name": "FNAME", "last_name": "LNAME"}
SKIP = {"email", "id", "address", "company"}


def merge_tag(key: str) -> str:
    return NAMED.get(key) or key.upper().replace("_", "")[:10]


def merge_fields(found: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in found.items():
        if key in SKIP or isinstance(value, (dict, list)):
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif value is None:
            value = ""
        fields[merge_tag(key)] = value
    return fields


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    if event.get("type") != "identify":
        return []
    found = traits(event)
    email = found.get("email")
    if not isinstance(email, str) or "@" not in email:
        return []
    api_key = settings["api_key"]
    dc = api_key.rsplit("-", 1)[-1]
    body = {
        "email_address": email.strip(),
        "status_if_new": "pending" if settings.get("double_opt_in") else "subscribed",
        "merge_fields": merge_fields(found),
    }
    url = f"https://{dc}.api.mailchimp.com/3.0/lists/{settings['list_id']}/members/{subscriber_hash(email)}"
    return [OutgoingRequest("PUT", url, {"Authorization": basic_auth("switchboard", api_key),
                                         "Content-Type": "application/json"},
                            json=body, idempotency_key=event.get("messageId"), secrets=(api_key,))]

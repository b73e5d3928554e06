"""What a translator returns: plain descriptions of HTTP requests, and helpers they share.

Translators (``server/destinations/<slug>/cloud.py``) are pure: event + settings in, a list of
``OutgoingRequest`` out, no I/O. The one shared sender performs them. A request may carry a
pure follow-up (``then``) for vendors where the second call needs an id from the first answer
(Intercom: find the contact, then update it); the follow-up is also pure — it only maps the
first response to more request descriptions.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import orjson


@dataclass(frozen=True)
class OutgoingRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None  # sent as orjson bytes with Content-Type: application/json
    body: bytes | None = None  # exact bytes (e.g. a signed webhook body)
    form: dict[str, str] | None = None  # application/x-www-form-urlencoded
    idempotency_key: str | None = None  # the vendor-side dedupe key we set (insert_id, …)
    secrets: tuple[str, ...] = ()  # values to redact from what we store about this request
    # (status, parsed JSON body or None) -> follow-up requests; pure.
    then: Callable[[int, Any], list["OutgoingRequest"]] | None = None

    def content(self) -> bytes | None:
        if self.body is not None:
            return self.body
        if self.json is not None:
            return orjson.dumps(self.json)
        return None


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def user_id(event: dict[str, Any]) -> str | None:
    value = event.get("userId")
    return str(value) if value not in (None, "") else None


def anonymous_id(event: dict[str, Any]) -> str | None:
    value = event.get("anonymousId")
    return str(value) if value not in (None, "") else None


def traits(event: dict[str, Any]) -> dict[str, Any]:
    """identify/group traits, else the context traits a call carried."""
    found = event.get("traits")
    if not isinstance(found, dict):
        found = (event.get("context") or {}).get("traits")
    return found if isinstance(found, dict) else {}


def properties(event: dict[str, Any]) -> dict[str, Any]:
    found = event.get("properties")
    return found if isinstance(found, dict) else {}


def context(event: dict[str, Any]) -> dict[str, Any]:
    found = event.get("context")
    return found if isinstance(found, dict) else {}


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def event_time(event: dict[str, Any]) -> datetime:
    """When it happened: timestamp, else receivedAt, else now."""
    for key in ("timestamp", "originalTimestamp", "receivedAt"):
        parsed = parse_time(event.get(key))
        if parsed is not None:
            return parsed
    return datetime.now(timezone.utc)


def page_name(event: dict[str, Any], kind: str) -> str:
    """Segment's page/screen event name: "Viewed {name}", or "Loaded a Page|Screen" without a name."""
    name = event.get("name") or properties(event).get("name")
    return f"Viewed {name}" if name else f"Loaded a {'Screen' if kind == 'screen' else 'Page'}"


def scalars(data: dict[str, Any]) -> dict[str, Any]:
    """Only the flat values (vendors that reject nested JSON)."""
    return {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool)) or v is None}

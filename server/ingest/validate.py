"""The Tracking API's rules for one event, checked before anything is stored.

Each broken rule is a 400 whose ``code`` names the rule and whose ``message`` says what to fix.
Inside a batch the message starts with ``batch[i]: `` and the body carries ``index: i`` — the
whole batch is refused, so that a client never has to guess which part was kept.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.errors import ApiError
from server.ingest.body import EVENT_LIMIT, json_type

TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_MESSAGE_ID = 100
MAX_BATCH_EVENTS = 2500

# What each known field must be when present (null counts as absent): ``id`` fields name
# someone or something — a string, or a number stored as a string.
_ID = object()
_EXPECTED: dict[str, Any] = {
    **dict.fromkeys(("userId", "anonymousId", "previousId", "groupId", "messageId"), _ID),
    **dict.fromkeys(("context", "integrations", "properties", "traits"), dict),
    **dict.fromkeys(("event", "name", "category", "timestamp", "originalTimestamp", "sentAt"), str),
}


def fail(code: str, message: str, index: int | None) -> ApiError:
    if index is None:
        return ApiError(400, code, message)
    return ApiError(400, code, f"batch[{index}]: {message}", extra={"index": index})


def is_id(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def id_text(value: str | int | float) -> str:
    """An id as stored: numbers become strings (42 and 42.0 both become "42")."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return str(value)


def check_event(item: Any, index: int | None, route_type: str | None = None) -> None:
    """Raise the 400 for the first rule ``item`` breaks (``index``: its place in a batch)."""
    if type(item) is not dict:
        raise fail("invalid_event", f"An event must be a JSON object, not {json_type(item)}", index)
    kind = route_type or item.get("type")
    if kind not in TYPES:
        shown = "no type" if kind is None else f"type {kind!r}" if isinstance(kind, str) else f"a type of {json_type(kind)}"
        raise fail("invalid_type", f"The event has {shown}; it must be one of {', '.join(TYPES)}", index)
    # One pass over the fields the event has (this runs for every event: keep it cheap).
    for name, value in item.items():
        expected = _EXPECTED.get(name)
        if expected is None or value is None:
            continue
        if expected is dict:
            if type(value) is not dict:
                raise fail("invalid_field", f"{name} must be an object, not {json_type(value)}", index)
        elif type(value) is not str and (expected is str or not is_id(value)):
            raise fail("invalid_field", f"{name} must be a string, not {json_type(value)}", index)
    if item.get("userId") in (None, "") and item.get("anonymousId") in (None, ""):
        raise fail("no_user_anon_id", f"A {kind} call needs a userId or an anonymousId", index)
    if kind == "track" and not item.get("event"):
        raise fail("missing_event", "A track call needs an event name (the event field)", index)
    message_id = item.get("messageId")
    if message_id is not None:
        text = id_text(message_id)
        if len(text) > MAX_MESSAGE_ID:
            raise fail(
                "message_id_too_long",
                f"messageId is {len(text)} characters; it must be at most {MAX_MESSAGE_ID}",
                index,
            )
        if "\x00" in text:
            raise fail("invalid_field", "messageId must not contain NUL characters", index)


def check_item_size(item: dict[str, Any], index: int) -> None:
    """A batch item over 32 KB (as JSON) is refused like a single event would be."""
    try:
        size = len(orjson.dumps(item))
    except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson writes
        raise fail("invalid_event", f"The event cannot be stored as JSON: {exc}", index) from None
    if size > EVENT_LIMIT:
        raise fail(
            "event_too_large", f"The event is {size:,} bytes; the limit is 32 KB ({EVENT_LIMIT:,} bytes)", index
        )


def check_batch(batch: Any) -> list[Any]:
    if not isinstance(batch, list):
        shown = "missing" if batch is None else json_type(batch)
        raise ApiError(400, "invalid_batch", f"The batch field must be an array of events, not {shown}")
    if len(batch) > MAX_BATCH_EVENTS:
        raise ApiError(
            400,
            "batch_too_many_events",
            f"The batch has {len(batch):,} events; the limit is {MAX_BATCH_EVENTS:,} per request",
        )
    return batch

"""The Tracking API's rules for one event, checked before anything is stored.

Each broken rule is a 400 whose ``code`` names the rule and whose ``message`` says what to fix.
Inside a batch the message starts with ``batch[i]: `` (and the error carries ``index: i``): the
collector then refuses that item on its own, over 32 KB (``oversize``) or breaking a rule
(``invalid_item``), and stores the rest of the batch, because SDKs drop a batch answered 400 and
their own checks let such items through; Segment stores the rest too.

Ids sent as numbers are kept as their exact decimal text. A JSON integer beyond 64 bits cannot
be parsed exactly (orjson reads it as a float, like JavaScript would), so an id that arrives as
a float at or beyond 2^53 is refused (400 ``invalid_event``): it may already have been rounded,
and a rounded userId silently names somebody else. Send such ids as strings.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.errors import ApiError
from server.ingest.body import EVENT_LIMIT, json_type
from server.ingest.depth import MAX_DEPTH

TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_MESSAGE_ID = 100
MAX_BATCH_EVENTS = 2500
_EXACT = 2.0**53  # every integer below this has an exact float; beyond, a float id may be rounded

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
        elif type(value) is not str:
            if expected is str or not is_id(value):
                raise fail("invalid_field", f"{name} must be a string, not {json_type(value)}", index)
            if type(value) is float and not -_EXACT < value < _EXACT:
                raise fail("invalid_event", f"{name} is a number too large to keep exactly (at or beyond 2^53, "
                           "where JSON numbers lose digits); send it as a string", index)
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


def oversize(item: Any) -> int:
    """The item's size as JSON if it is over 32 KB, else 0 (it is then refused on its own)."""
    try:
        size = len(orjson.dumps(item))
    except orjson.JSONEncodeError as exc:  # nothing parsed from JSON fails here (depth is checked first)
        raise fail("invalid_event", f"The event cannot be stored as JSON: {exc}", None) from None
    return size if size > EVENT_LIMIT else 0


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    return (value if type(value) is str else orjson.dumps(value).decode())[:limit]


def refusal(item: Any, index: int, size: int) -> dict[str, Any]:
    """What is kept of an oversize batch item: who and what it was, its size, and why — never its
    properties (server/store/rejections.py stores this)."""
    fields = item if type(item) is dict else {}
    return {
        "reason": "event_too_large",
        "message": f"batch[{index}]: the event is {size:,} bytes; the limit is 32 KB ({EVENT_LIMIT:,} bytes)",
        "message_id": _text(fields.get("messageId"), 100),
        "type": _text(fields.get("type"), 20),
        "event": _text(fields.get("event") or fields.get("name"), 200),
        "size": size,
    }


def too_deep_item(index: int) -> ApiError:
    """The reason a batch item nested too deep is refused alone (server/ingest/depth.py)."""
    return fail("invalid_event", f"the event is nested more than {MAX_DEPTH - 2} levels deep (the batch's body "
                f"object is level 1, the item level 3); flatten its properties", index)


def invalid_item(item: Any, exc: ApiError) -> dict[str, Any]:
    """What is kept of a batch item refused on its own for breaking a rule (``exc``, the 400 a
    single-event route would answer): who and what it was, its size, and why — never its
    properties (server/store/rejections.py stores this)."""
    fields = item if type(item) is dict else {}
    try:
        size = len(orjson.dumps(item))
    except orjson.JSONEncodeError:  # an item nested deeper than orjson writes (254 levels): refused for it
        size = 0
    return {
        "reason": exc.code,
        "message": exc.message[:300],
        "message_id": _text(fields.get("messageId"), 100),
        "type": _text(fields.get("type"), 20),
        "event": _text(fields.get("event") or fields.get("name"), 200),
        "size": size,
    }


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

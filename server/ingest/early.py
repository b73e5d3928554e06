"""The snippet's early send (``POST {collector}/e``), expanded into the event the bundle would build.

The snippet (js_templates/snippet.js.j2) sends a page or track call made before the bundle arrives
without building the Segment event itself (that code would not fit a small snippet): it posts a
JSON array of what only the browser knows, and this module builds from it, with what the server
knows (the source's library name, the core version, its device-mode destinations:
``server.api.early_send.early_facts``, the rule the snippet was rendered by), exactly the event the
bundle's ``make()``/``deliver()`` (js_templates/core/40-analytics.js, 45-api.js) would have posted::

    [writeKey, method, args, bpc, messageId, initial, canonical, locale, userAgent, timezone,
     screenWidth, screenHeight, devicePixelRatio, userAgentData]

- ``method``: "page" or "track"; ``args``: the call's arguments (JSON; a callback becomes null);
- ``bpc``: the snippet's buffered page context ``{c, p, u, s, t, r}`` with the visitor's ids:
  ``a``, the anonymousId, and ``i``, the userId (absent, null or empty: none, as the bundle's
  ``userId() || opts.userId || null``); the bundle gets the same;
- ``messageId``: ``"sb-<time in ms>-<uuid>"``; the event's timestamp is the time in it (the
  bundle rebuilds the event from the same messageId, ``bpc.e``, and ``bpc.i``);
- ``initial``: the page's first page call (destinations with ``track_initial_page: false`` skip it);
- ``canonical``: the canonical link resolved by the browser against the page's URL
  (``new URL(c, location)``), or null.

Snippets pasted before that form keep running on sites for years, so the earlier array is
accepted too: the same 14 items but for the fifth, ``ids``: ``{messageId, timestamp (ms),
userId}`` (``bpc.e`` in the bundle), and its userId taken as it is.

The result is a normal Segment event; it then takes the collector's ordinary path (validation,
dedupe on messageId, the group-commit writer, the same 200). ``early_send_refused`` (409): a call
with options (the bundle sends it itself: it does not take such a call as sent), or a source that
now has consent categories or filters (a snippet pasted before they were added: privacy first).
Any other malformed body is ``invalid_early_event``. Segment's own libraries never use this path.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from server.api.early_send import Facts
from server.errors import ApiError
from server.ingest.normalise import iso

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FIELDS = 14


def write_key_of(body: Any) -> str | None:
    return body[0] if type(body) is list and body and _str(body[0]) else None


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_early_event", message)


def _obj(v: Any) -> bool:
    return type(v) is dict


def _str(v: Any) -> bool:
    return type(v) is str


def _at(a: list, i: int) -> Any:
    return a[i] if i < len(a) else None


def _number(v: Any, name: str) -> int | float:
    if type(v) not in (int, float):
        raise _bad(f"{name} must be a number")
    return v


def page_context(bpc: dict[str, Any], canonical: Any) -> dict[str, Any]:
    """pCtx(bpc) in the bundle: the canonical link's URL (with the page's query when it has none)."""
    for key in "pusrt":
        if not _str(bpc.get(key)):
            raise _bad(f"bpc.{key} must be a string")
    url, path = bpc["u"].split("#")[0], bpc["p"]
    if bpc.get("c"):
        if not _str(canonical):
            raise _bad("a page with a canonical link needs its resolved URL")
        url = canonical if "?" in canonical else canonical + bpc["s"]
        try:
            path = urlsplit(canonical).path or "/"
        except ValueError:  # e.g. "http://[::1": the browser's URL parser would have thrown
            raise _bad("the canonical URL does not parse") from None
    return {"path": path, "referrer": bpc["r"], "search": bpc["s"], "title": bpc["t"], "url": url}


def fields_of(method: str, args: list) -> dict[str, Any]:
    """The event's own fields from the call's arguments, by the bundle's rules (track(),
    pageLike()); a call with options is refused."""
    fields: dict[str, Any] = {}
    if method == "track":
        whole = _obj(_at(args, 0))
        name = args[0].get("event") if whole else _at(args, 0)
        if not name or not _str(name):
            raise _bad("track needs an event name")
        props = (args[0].get("properties") if whole else _at(args, 1) if _obj(_at(args, 1)) else None) or {}
        opts = _at(args, 1) if whole else _at(args, 2)
        fields.update(event=name, properties=props)
    else:
        a = args[:5]
        s, o = [v for v in a if _str(v)], [v for v in a if _obj(v)]
        props, opts = o[0] if o else None, o[1] if len(o) > 1 else None
        if len(s) == 1:
            fields["name"] = _at(a, 1) if _str(_at(a, 1)) else s[0]
        elif len(s) == 2:
            if _str(_at(a, 0)):
                fields["category"] = a[0]
            if _str(_at(a, 1)):
                fields["name"] = a[1]
        if len(o) == 1 and not _obj(_at(a, 2)) and _obj(_at(a, 3)):
            props, opts = {}, a[3]
        fields["properties"] = props or {}
    if _obj(opts):
        raise ApiError(409, "early_send_refused", "A call with options is sent by the bundle, not early")
    return fields


MESSAGE_ID = re.compile(r"sb-([0-9]{1,16})-")


def _ids(ids: str | dict[str, Any], bpc: dict[str, Any]) -> tuple[str, int, str | None]:
    """(messageId, timestamp in ms, userId) of either form (above)."""
    if isinstance(ids, str):  # the snippet's current form
        time, user_id = MESSAGE_ID.match(ids), bpc.get("i")
        if time is None or not (user_id is None or _str(user_id)):
            raise _bad('The messageId must be "sb-<time in ms>-<uuid>" and bpc.i a string or null')
        return ids, int(time.group(1)), user_id or None
    message_id, moment, user_id = ids.get("messageId"), ids.get("timestamp"), ids.get("userId")
    if not _str(message_id) or not (user_id is None or _str(user_id)) or type(moment) is not int:
        raise _bad("ids must be {messageId, timestamp: time in ms, userId: a string or null}")
    return message_id, moment, user_id


def expand(body: Any, facts: Facts | None) -> dict[str, Any]:
    """The snippet's compact array → the Segment event the bundle would have posted, with the
    source's early-send facts (None: the source's events must wait for the bundle)."""
    if type(body) is not list or len(body) != FIELDS:
        raise _bad(f"Send the snippet's {FIELDS}-item array")
    key, method, args, bpc, ids, initial, canonical, locale, agent, zone, width, height, density, uad = body
    if method not in ("page", "track") or type(args) is not list or not _obj(bpc) or not (_str(ids) or _obj(ids)):
        raise _bad("Send a page or track call with its arguments, page context and messageId")
    if facts is None:
        raise ApiError(409, "early_send_refused", "This source's events wait for the bundle (a destination has "
                       "consent categories or filters); copy the snippet again")
    library, version, device, initial_names = facts
    message_id, moment, user_id = _ids(ids, bpc)
    anonymous_id = bpc.get("a")
    if not _str(anonymous_id):
        raise _bad("bpc.a must be the anonymousId")
    try:
        timestamp = iso(EPOCH + timedelta(milliseconds=moment))
    except OverflowError:
        raise _bad("The time in ms is out of range") from None
    page = page_context(bpc, canonical)
    if any(k.startswith("utm_") and len(k) > 4 for k, _ in parse_qsl(page["search"].lstrip("?"), keep_blank_values=True)):
        raise _bad("A page with utm_ parameters is sent by the bundle (context.campaign)")
    fields = fields_of(method, args)
    context: dict[str, Any] = {
        "library": {"name": library, "version": version}, "locale": locale,
        "screen": {"width": _number(width, "screen width"), "height": _number(height, "screen height"),
                   "density": _number(density, "devicePixelRatio")},
    }
    props = fields["properties"] if method == "page" and _obj(fields["properties"]) else {}
    context["page"] = {**page, **{k: props[k] for k in page if k in props}}
    context["userAgent"] = agent
    if zone is not None:
        context["timezone"] = zone
    if uad:
        context["userAgentData"] = uad
    event: dict[str, Any] = {"type": method, **fields, "messageId": message_id, "timestamp": timestamp,
                             "anonymousId": anonymous_id, "context": context, "integrations": {}, "userId": user_id}
    if method == "page":
        event["properties"] = {**page, **(fields["properties"] if _obj(fields["properties"]) else {})}
        for name in ("name", "category"):
            if event.get(name) is not None:
                event["properties"][name] = event[name]
    names = initial_names if method == "page" and initial is True else device
    event["integrations"] = {name: False for name in names}
    if names:
        event["_metadata"] = {"bundled": sorted(names)}
    event["writeKey"] = key
    event["sentAt"] = timestamp
    return event

"""What the server adds to or fixes in an accepted event before it is stored.

- ``messageId``: kept (numbers become strings), or generated (``api-<uuid4>``).
- ``receivedAt``: the server clock when the request arrived, the same for a whole batch.
- ``originalTimestamp``: the ``timestamp`` the client sent (its own clock), kept as sent.
- ``timestamp``: ``receivedAt − (sentAt − originalTimestamp)`` — the client's time corrected by
  its clock skew, as Segment's spec defines it; without ``sentAt`` the client's time is trusted;
  without any client time it is ``receivedAt``.
- A batch's top-level ``context``, ``integrations`` and ``sentAt`` apply to every item (the
  item's own keys win).
- ``context.ip``: the client's address, unless the event already names one.
- ``writeKey`` is dropped: it is a credential, and the source id says the same.

Times are written as ISO 8601 UTC with milliseconds (``2026-01-02T03:04:05.678Z``), as
Segment's own pipeline does.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from server.api.client_time import parse_client_time
from server.ingest.body import json_type
from server.ingest.validate import fail, id_text

_ID_FIELDS = ("userId", "anonymousId", "previousId", "groupId", "messageId")


# "YYYY-MM-DDTHH:MM:SS" per whole second: formatting a datetime costs microseconds, and most
# of the times written (receivedAt, corrected timestamps) fall in the same few seconds.
_SECOND_TEXT: dict[int, str] = {}


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as Segment writes times."""
    if not 1970 <= moment.year <= 9998:
        return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    second = round(moment.timestamp() - moment.microsecond / 1e6)
    text = _SECOND_TEXT.get(second)
    if text is None:
        if len(_SECOND_TEXT) >= 4096:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[second] = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}Z"


def parse_time(value: str, name: str, index: int | None) -> datetime:
    # The warehouse reads stored times with the same function (server/api/client_time.py).
    moment = parse_client_time(value)
    if moment is None:
        raise fail("invalid_timestamp", f"{name} {value[:40]!r} is not an ISO 8601 time", index)
    return moment


class BatchDefaults:
    """A batch's top-level context, integrations and sentAt, read (and sentAt parsed) once."""

    __slots__ = ("context", "integrations", "sent_at", "sent")

    def __init__(self, body: dict[str, Any]):
        context, integrations, sent_at = body.get("context"), body.get("integrations"), body.get("sentAt")
        for name, value, expected in (("context", context, dict), ("integrations", integrations, dict),
                                      ("sentAt", sent_at, str)):
            if value is not None and type(value) is not expected:
                shown = "an object" if expected is dict else "a string"
                raise fail("invalid_field", f"The batch's {name} must be {shown}, not {json_type(value)}", None)
        self.context = context or None
        self.integrations = integrations or None
        self.sent_at = sent_at
        self.sent = parse_time(sent_at, "sentAt", None) if sent_at is not None else None


def normalise(
    item: dict[str, Any],
    *,
    index: int | None,
    route_type: str | None,
    received_at: datetime,
    received_iso: str,
    ip: str | None,
    batch: BatchDefaults | None = None,
) -> dict[str, Any]:
    """Normalise ``item`` in place (it was parsed for this request alone) and return it.

    Runs once per event: written for speed (no copies of the item, one parse per time)."""
    item.pop("writeKey", None)
    if route_type:
        item["type"] = route_type
    for name in _ID_FIELDS:
        value = item.get(name)
        if value is not None and type(value) is not str:
            item[name] = id_text(value)
    message_id = item.get("messageId")
    if message_id is None or message_id == "":
        item["messageId"] = f"api-{uuid.uuid4()}"

    context = item.get("context")
    integrations = item.get("integrations")
    sent_at = item.get("sentAt")
    sent = None
    if batch is not None:
        if batch.context is not None:
            context = {**batch.context, **context} if context else dict(batch.context)
        if batch.integrations is not None:
            integrations = {**batch.integrations, **integrations} if integrations else dict(batch.integrations)
            item["integrations"] = integrations
        if sent_at is None and batch.sent_at is not None:
            sent_at, sent = batch.sent_at, batch.sent
    if context is None:
        context = {}
    if ip and "ip" not in context:
        context["ip"] = ip  # our own dict: the item's (parsed for this request), or a fresh merge
    item["context"] = context

    original = item.get("timestamp")
    if original is None:
        original = item.get("originalTimestamp")
    item["receivedAt"] = received_iso
    if sent_at is not None:
        if sent is None:
            sent = parse_time(sent_at, "sentAt", index)
        item["sentAt"] = sent_at
    if original is None:
        item["timestamp"] = received_iso
        return item
    client_time = parse_time(original, "timestamp", index)
    item["originalTimestamp"] = original
    try:
        corrected = client_time if sent is None else received_at - (sent - client_time)
        item["timestamp"] = iso(corrected)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise fail("invalid_timestamp", f"timestamp {original[:40]!r} is out of range, or too far from sentAt",
                   index) from None
    return item

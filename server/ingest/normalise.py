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

from server.ingest.validate import fail, id_text


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str, name: str, index: int | None) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise fail("invalid_timestamp", f"{name} {value[:40]!r} is not an ISO 8601 time", index) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def normalise(
    item: dict[str, Any],
    *,
    index: int | None,
    route_type: str | None,
    received_at: datetime,
    received_iso: str,
    ip: str | None,
    batch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Normalise ``item`` in place (it was parsed for this request alone) and return it."""
    item.pop("writeKey", None)
    if route_type:
        item["type"] = route_type
    for name in ("userId", "anonymousId", "previousId", "groupId"):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            item[name] = id_text(value)
    message_id = item.get("messageId")
    if message_id is None or message_id == "":
        item["messageId"] = f"api-{uuid.uuid4()}"
    elif not isinstance(message_id, str):
        item["messageId"] = id_text(message_id)

    context = item.get("context") or {}
    integrations = item.get("integrations")
    sent_at = item.get("sentAt")
    if batch:
        if isinstance(batch.get("context"), dict):
            context = {**batch["context"], **context}
        if isinstance(batch.get("integrations"), dict):
            integrations = {**batch["integrations"], **(integrations or {})}
        if sent_at is None and isinstance(batch.get("sentAt"), str):
            sent_at = batch["sentAt"]
    if ip and "ip" not in context:
        context = {**context, "ip": ip}
    item["context"] = context
    if integrations is not None:
        item["integrations"] = integrations

    original = item.get("timestamp")
    if original is None:
        original = item.get("originalTimestamp")
    item["receivedAt"] = received_iso
    if original is None:
        item["timestamp"] = received_iso
        if sent_at is not None:
            parse_time(sent_at, "sentAt", index)
            item["sentAt"] = sent_at
        return item
    client_time = parse_time(original, "timestamp", index)
    item["originalTimestamp"] = original
    if sent_at is None:
        corrected = client_time
    else:
        item["sentAt"] = sent_at
        sent = parse_time(sent_at, "sentAt", index)
        try:
            corrected = received_at - (sent - client_time)
        except OverflowError:
            raise fail("invalid_timestamp", "timestamp and sentAt are too far apart to correct the clock skew", index) from None
    try:
        item["timestamp"] = iso(corrected)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise fail("invalid_timestamp", f"timestamp {original[:40]!r} is out of range", index) from None
    return item

"""One Segment event → the warehouse rows it produces, as {column: value} dicts.

| call     | tables                                                         |
|----------|----------------------------------------------------------------|
| identify | ``identifies`` (every call) and ``users`` (upserted on user_id) |
| group    | ``groups`` (every call) and ``accounts`` (upserted on group_id) |
| alias    | ``aliases``                                                    |
| page     | ``pages``;  screen: ``screens``                                |
| track    | ``tracks`` (no properties) and ``<event_slug>`` (properties)   |

Every event row carries the common columns (id = messageId, anonymous_id, user_id,
received_at, sent_at, timestamp, original_timestamp; uuid_ts is set at load time) and the
flattened ``context_*``. Custom properties and traits that would land on one of those columns
are dropped and reported, so a property can never overwrite what the call itself says.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from server.warehouse.naming import event_table, event_table_was_cut, flatten
from server.warehouse.types import call_time

# Columns whose type is fixed by us rather than inferred from the first value.
FIXED_TYPES = {
    "id": "text",
    "anonymous_id": "text",
    "user_id": "text",
    "received_at": "timestamp",
    "sent_at": "timestamp",
    "timestamp": "timestamp",
    "original_timestamp": "timestamp",
    "uuid_ts": "timestamp",
    "event": "text",
    "event_text": "text",
    "name": "text",
    "category": "text",
    "group_id": "text",
    "previous_id": "text",
}
COMMON = ("id", "anonymous_id", "user_id", "received_at", "sent_at", "timestamp", "original_timestamp", "uuid_ts")
UPSERT_TABLES = {"users", "accounts"}

Notice = Callable[[str], None]


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _time(event: dict[str, Any], key: str, notice: Notice) -> datetime | None:
    """One of the call's own times, read as the collector read it (types.call_time)."""
    value = event.get(key)
    if value is None:
        return None
    moment = call_time(value) if isinstance(value, str) else None
    if moment is None:  # the collector accepted it, but it is out of range in UTC, or older data
        notice(f"an event's {key} {str(value)[:40]!r} is not a time the warehouse can store; left out")
    return moment


def _common(event: dict[str, Any], received_at: datetime, notice: Notice) -> dict[str, Any]:
    received = _time(event, "receivedAt", notice) or received_at
    timestamp = _time(event, "timestamp", notice) or received
    row = {
        "id": _text(event.get("messageId")),
        "anonymous_id": _text(event.get("anonymousId")),
        "user_id": _text(event.get("userId")),
        "received_at": received,
        "sent_at": _time(event, "sentAt", notice),
        "timestamp": timestamp,
        "original_timestamp": _time(event, "originalTimestamp", notice) or timestamp,
    }
    context = event.get("context")
    if isinstance(context, dict):
        row.update(flatten(context, "context"))
    return row


def _add_custom(row: dict[str, Any], table: str, data: Any, notice: Notice) -> dict[str, Any]:
    """Add flattened properties/traits to ``row``; collisions with its own columns are dropped."""
    if not isinstance(data, dict):
        return row
    standard = set(row)
    unnamed: list[str] = []
    for column, value in flatten(data, unnamed=unnamed):
        if column in standard or column in COMMON or column.startswith("context_"):
            # analytics.js copies a page's name and category into its properties: a copy of
            # the call's own value is not worth a notice, a different value is.
            if row.get(column) != value:
                notice(f"{table}.{column}: dropped a property/trait named like a standard column")
        elif column in row:
            notice(f"{table}.{column}: two properties/traits snake-case to this name; kept the first")
        else:
            row[column] = value
    for key in unnamed:
        notice(f"{table}: dropped a property/trait whose name has no ASCII letter or digit ({key[:40]!r})")
    return row


def rows_for_event(
    event: dict[str, Any], received_at: datetime, notice: Notice
) -> list[tuple[str, dict[str, Any]]]:
    """The (table, row) pairs one event produces; [] for a type the warehouse does not store."""
    kind = event.get("type")
    common = _common(event, received_at, notice)
    if common["id"] is None:
        notice("an event without messageId was skipped")
        return []

    if kind == "identify":
        rows = [("identifies", _add_custom(dict(common), "identifies", event.get("traits"), notice))]
        if common["user_id"]:
            user = {"id": common["user_id"], "received_at": common["received_at"]}
            user.update((k, v) for k, v in common.items() if k.startswith("context_"))
            rows.append(("users", _add_custom(user, "users", event.get("traits"), notice)))
        return rows

    if kind == "group":
        group_id = _text(event.get("groupId"))
        row = dict(common, group_id=group_id)
        rows = [("groups", _add_custom(row, "groups", event.get("traits"), notice))]
        if group_id:
            account = {"id": group_id, "received_at": common["received_at"]}
            account.update((k, v) for k, v in common.items() if k.startswith("context_"))
            rows.append(("accounts", _add_custom(account, "accounts", event.get("traits"), notice)))
        return rows

    if kind == "alias":
        return [("aliases", dict(common, previous_id=_text(event.get("previousId"))))]

    if kind in ("page", "screen"):
        table = "pages" if kind == "page" else "screens"
        row = dict(common, name=_text(event.get("name")), category=_text(event.get("category")))
        return [(table, _add_custom(row, table, event.get("properties"), notice))]

    if kind == "track":
        name = _text(event.get("event")) or ""
        table = event_table(name)
        row = dict(common, event=table or None, event_text=name or None)
        rows = [("tracks", row)]
        if table:
            if event_table_was_cut(name):
                notice(f"{table}: the event name {name[:80]!r} is longer than 63 characters once snake-cased "
                       f"and was cut; events whose names differ only after that share this table "
                       f"(event_text keeps each full name)")
            rows.append((table, _add_custom(dict(row), table, event.get("properties"), notice)))
        else:
            notice(f"track {name!r} has no usable table name; stored in tracks only")
        return rows

    notice(f"an event of type {kind!r} was skipped")
    return []

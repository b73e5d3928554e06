"""The durable event log: every accepted Tracking API event, in arrival order.

``events.id`` is the log sequence that delivery reads after (``read_after``). ``payload`` is
the normalised event as JSON text (written once with orjson, parsed only by readers that need
it). ``message_ids`` holds the dedupe window: (source_id, message_id) seen in the last 24 h.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

import orjson
from sqlalchemy import Column, Engine, Index, String, Table, Text, select

from server.store.engine import read_only
from server.store.schema import Id, UTCDateTime, metadata

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_id", Id, nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("type", String(10), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("payload", Text, nullable=False),
)
Index("ix_events_source_id_id", events.c.source_id, events.c.id)

message_ids = Table(
    "message_ids",
    metadata,
    Column("source_id", Id, primary_key=True),
    Column("message_id", String(100), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False, index=True),
)


def _event(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "source_id": row.source_id,
        "message_id": row.message_id,
        "type": row.type,
        "received_at": row.received_at,
        "event": orjson.loads(row.payload),
    }


def read_after(engine: Engine, after_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Events with id > after_id, oldest first: what delivery fans out next."""
    with read_only(engine) as conn:
        rows = conn.execute(select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)).all()
    return [_event(r) for r in rows]


def list_events(
    engine: Engine,
    source_id: int,
    *,
    limit: int = 50,
    type: str | None = None,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """A source's events, newest first (the debugger and the admin API)."""
    query = select(events).where(events.c.source_id == source_id)
    if type:
        query = query.where(events.c.type == type)
    if before:
        query = query.where(events.c.id < before)
    with read_only(engine) as conn:
        rows = conn.execute(query.order_by(events.c.id.desc()).limit(limit)).all()
    return [_event(r) for r in rows]


def get_event(engine: Engine, event_id: int) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(select(events).where(events.c.id == event_id)).one_or_none()
    return None if row is None else _event(row)


def rows_for(source_id: int, received_at: datetime, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows for normalised events (each already has messageId and type)."""
    return [
        {
            "source_id": source_id,
            "message_id": item["messageId"],
            "type": item["type"],
            "received_at": received_at,
            "payload": orjson.dumps(item).decode(),
        }
        for item in items
    ]

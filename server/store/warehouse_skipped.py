"""Events a warehouse refused: the persistent list a data engineer can read and re-load.

When the warehouse refuses one event's rows with an error about the data (a value, a name, a
constraint; server/warehouse/data_errors.py), the loader skips that event so that everything
logged after it still loads, and records it here: which destination, the event's id in the log
and its messageId, the table that refused it ('' when no row could even be built), the error,
and the sync that skipped it. The entry is written in the same transaction as the cursor that
moves past the event, so an event is never both skipped and forgotten.

A later sync asked to re-load the skipped events reads them back from the log by id: those that
load now (the cause was fixed) leave the list; those that still fail stay, with the new error.
Events no longer in the log (retention, a delete regulation) leave the list too. The list of a
destination is emptied when its settings point to another database (that one gets every event).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson
from sqlalchemy import Column, Connection, Engine, ForeignKey, String, Table, Text, func, select

from server.store.engine import read_only
from server.store.events import events
from server.store.schema import Id, UTCDateTime, metadata

warehouse_skipped = Table(
    "warehouse_skipped",
    metadata,
    Column("destination_id", Id, ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True),
    Column("event_id", Id, primary_key=True),              # events.id
    Column("table_name", String(100), primary_key=True),   # '' when the event made no rows
    Column("message_id", String(100), nullable=False),
    Column("error", Text, nullable=False),
    Column("sync_id", Id, nullable=True),
    Column("skipped_at", UTCDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Skipped:
    """One event's rows a warehouse table refused."""

    event_id: int
    message_id: str
    table: str
    error: str


def create_tables(conn: Connection) -> None:
    warehouse_skipped.create(conn, checkfirst=True)


def record(conn: Connection, destination_id: int, sync_id: int | None, skipped: Iterable[Skipped]) -> None:
    """Add (or refresh) entries, inside the caller's transaction (the cursor's)."""
    now = datetime.now(timezone.utc)
    rows: dict[tuple[int, str], dict[str, Any]] = {(s.event_id, s.table): {
        "destination_id": destination_id, "event_id": s.event_id, "table_name": s.table[:100],
        "message_id": s.message_id[:100], "error": s.error, "sync_id": sync_id, "skipped_at": now,
    } for s in skipped}
    if not rows:
        return
    by_table: dict[str, list[int]] = {}
    for row in rows.values():  # an event skipped again (a crash before, a re-load) replaces its entry
        by_table.setdefault(row["table_name"], []).append(row["event_id"])
    for table, ids in by_table.items():
        for start in range(0, len(ids), 500):
            conn.execute(warehouse_skipped.delete().where(
                warehouse_skipped.c.destination_id == destination_id, warehouse_skipped.c.table_name == table,
                warehouse_skipped.c.event_id.in_(ids[start:start + 500])))
    conn.execute(warehouse_skipped.insert(), list(rows.values()))


def forget(conn: Connection, destination_id: int, event_ids: list[int]) -> None:
    """Drop every entry of these events (they loaded, or they are gone from the log)."""
    for start in range(0, len(event_ids), 500):
        conn.execute(warehouse_skipped.delete().where(
            warehouse_skipped.c.destination_id == destination_id,
            warehouse_skipped.c.event_id.in_(event_ids[start:start + 500])))


def replace(engine: Engine, destination_id: int, event_ids: list[int], sync_id: int | None,
            skipped: list[Skipped]) -> None:
    """After a re-load of ``event_ids``: their entries go, except those ``skipped`` again."""
    with engine.begin() as conn:
        forget(conn, destination_id, event_ids)
        record(conn, destination_id, sync_id, skipped)


def forget_all(conn: Connection, destination_id: int) -> None:
    conn.execute(warehouse_skipped.delete().where(warehouse_skipped.c.destination_id == destination_id))


def event_ids(engine: Engine, destination_id: int, *, after: int, limit: int) -> list[int]:
    """The ids of skipped events after ``after``, oldest first, at most ``limit``."""
    with read_only(engine) as conn:
        return list(conn.execute(
            select(warehouse_skipped.c.event_id).distinct()
            .where(warehouse_skipped.c.destination_id == destination_id, warehouse_skipped.c.event_id > after)
            .order_by(warehouse_skipped.c.event_id).limit(limit)).scalars())


def list_skipped(engine: Engine, destination_id: int, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
    """A destination's skipped events, newest first, and how many entries there are in all."""
    with read_only(engine) as conn:
        rows = conn.execute(
            select(warehouse_skipped).where(warehouse_skipped.c.destination_id == destination_id)
            .order_by(warehouse_skipped.c.event_id.desc(), warehouse_skipped.c.table_name).limit(limit)).all()
        total = conn.execute(select(func.count()).select_from(warehouse_skipped)
                             .where(warehouse_skipped.c.destination_id == destination_id)).scalar_one()
    return [{"event_id": r.event_id, "message_id": r.message_id, "table": r.table_name, "error": r.error,
             "sync_id": r.sync_id, "skipped_at": r.skipped_at} for r in rows], total


def read_events(engine: Engine, source_id: int, ids: list[int]) -> list[dict[str, Any]]:
    """Those of ``ids`` that are still a source's events in the log, oldest first, as
    ``warehouse.read_source_after`` reads them: a re-load of skipped events reads them back."""
    found: list[dict[str, Any]] = []
    loads = orjson.loads
    with read_only(engine) as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                select(events.c.id, events.c.received_at, events.c.payload)
                .where(events.c.source_id == source_id, events.c.id.in_(ids[start:start + 500]))
            ).all()
            found += [{"id": id_, "received_at": received, "event": loads(payload)} for id_, received, payload in rows]
    return sorted(found, key=lambda item: item["id"])

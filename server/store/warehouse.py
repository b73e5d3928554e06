"""Warehouse bookkeeping: per-destination cursors into the event log, sync history, and the
schema registry (the type of every warehouse column, as Segment keeps "a record of what the
tables and column types should be").

The cursor only moves forward (``advance_cursor`` keeps the larger value), so replaying a
cursor update is harmless. The warehouse tables themselves live in the target database, not
here.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import JSON, Column, Engine, ForeignKey, Index, String, Table, Text, func, select, text

from server.store import warehouse_skipped
from server.store.engine import read_only
from server.store.events import events
from server.store.schema import Id, UTCDateTime, metadata
from server.store.warehouse_skipped import Skipped

log = logging.getLogger("switchboard.warehouse")

warehouse_cursors = Table(
    "warehouse_cursors",
    metadata,
    Column("destination_id", Id, ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True),
    Column("last_event_id", Id, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

warehouse_syncs = Table(
    "warehouse_syncs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("destination_id", Id, ForeignKey("destinations.id", ondelete="CASCADE"), nullable=False),
    Column("trigger", String(20), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("events", Id, nullable=False, default=0),
    Column("rows", JSON, nullable=False),
    Column("notices", JSON, nullable=False),
    Column("error", Text, nullable=True),
    # Events the warehouse refused and the sync skipped (warehouse_skipped.py lists them).
    Column("skipped", Id, nullable=False, default=0, server_default="0"),
)
Index("ix_warehouse_syncs_destination_id_id", warehouse_syncs.c.destination_id, warehouse_syncs.c.id)

warehouse_columns = Table(
    "warehouse_columns",
    metadata,
    Column("destination_id", Id, ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True),
    Column("table_name", String(100), primary_key=True),
    Column("column_name", String(100), primary_key=True),
    Column("type", String(20), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)


# Which database a destination loaded into last (a hash: the URL holds a password). When the
# settings point somewhere else, the new warehouse starts from the first logged event.
warehouse_targets = Table(
    "warehouse_targets",
    metadata,
    Column("destination_id", Id, ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- events of one source


def read_source_after(
    engine: Engine, source_id: int, after_id: int, limit: int, up_to: int | None = None
) -> list[dict[str, Any]]:
    """A source's events with after_id < id (<= up_to), oldest first (uses ix_events_source_id_id).

    Only what a load needs: {id, received_at, event}.
    """
    query = select(events.c.id, events.c.received_at, events.c.payload).where(
        events.c.source_id == source_id, events.c.id > after_id
    )
    if up_to is not None:
        query = query.where(events.c.id <= up_to)
    query = query.order_by(events.c.id).limit(limit)
    with read_only(engine) as conn:
        rows = conn.execute(query).all()
    loads = orjson.loads
    return [{"id": id_, "received_at": received, "event": loads(payload)} for id_, received, payload in rows]


def last_event_id(engine: Engine, source_id: int, *, floor: int = 0, settle_timeout: float = 5.0) -> int:
    """The newest logged event of a source that is safe to load up to (``floor`` if none is).

    On PostgreSQL ids come from a sequence before commit: with several collector processes,
    id 41 can become visible after 42, and a cursor moved past 42 would skip 41 for ever. So
    the newest id is read together with the snapshot's ``xmax``, and returned only once every
    transaction that was running then has ended (``pg_snapshot_xmin`` ≥ that xmax): from then
    on every id below it that will ever exist is visible. A transaction that stays open longer
    than ``settle_timeout`` holds the sync back (``floor`` is returned: nothing loads this time).
    """
    with read_only(engine) as conn:
        newest = conn.execute(select(func.max(events.c.id)).where(events.c.source_id == source_id)).scalar() or 0
        if conn.dialect.name != "postgresql" or newest <= floor:
            return newest
    # An inserting transaction takes its id a moment before it owns an xid: read xmax a little
    # later, so that every writer of an id up to ``newest`` is below it (as delivery's fan-out does).
    time.sleep(0.02)
    with engine.connect() as conn:
        xmax = conn.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")).scalar_one()
    deadline = time.monotonic() + settle_timeout
    while True:
        with engine.connect() as conn:
            xmin = conn.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")).scalar_one()
        if xmin >= xmax:
            return newest
        if time.monotonic() > deadline:
            log.warning("warehouse: a long-running transaction holds loads of source %s back", source_id)
            return floor
        time.sleep(0.02)


def pending_count(engine: Engine, source_id: int, after_id: int, cap: int) -> int:
    """How many of a source's events wait after the cursor, counting at most ``cap``."""
    inner = (
        select(events.c.id)
        .where(events.c.source_id == source_id, events.c.id > after_id)
        .limit(cap)
        .subquery()
    )
    with read_only(engine) as conn:
        return conn.execute(select(func.count()).select_from(inner)).scalar_one()


# ---------------------------------------------------------------- cursors


def get_cursor(engine: Engine, destination_id: int) -> int:
    with read_only(engine) as conn:
        value = conn.execute(
            select(warehouse_cursors.c.last_event_id).where(warehouse_cursors.c.destination_id == destination_id)
        ).scalar_one_or_none()
    return value or 0


def advance_cursor(engine: Engine, destination_id: int, last_event_id: int, *,
                   skipped: list[Skipped] | None = None, sync_id: int | None = None) -> None:
    """Move the cursor to ``last_event_id`` unless it is already further, and record the events
    of the batch that were ``skipped``, in one transaction: an event passed by the cursor is
    either in the warehouse or in the skipped list."""
    with engine.begin() as conn:
        if skipped:
            warehouse_skipped.record(conn, destination_id, sync_id, skipped)
        current = conn.execute(
            select(warehouse_cursors.c.last_event_id)
            .where(warehouse_cursors.c.destination_id == destination_id)
            .with_for_update()
        ).scalar_one_or_none()
        if current is None:
            conn.execute(
                warehouse_cursors.insert().values(
                    destination_id=destination_id, last_event_id=last_event_id, updated_at=_now()
                )
            )
        elif last_event_id > current:
            conn.execute(
                warehouse_cursors.update()
                .where(warehouse_cursors.c.destination_id == destination_id)
                .values(last_event_id=last_event_id, updated_at=_now())
            )


def use_target(engine: Engine, destination_id: int, fingerprint: str) -> bool:
    """Record the target a sync loads into; True when it changed (cursor and registry reset)."""
    with engine.begin() as conn:
        known = conn.execute(
            select(warehouse_targets.c.fingerprint).where(warehouse_targets.c.destination_id == destination_id)
        ).scalar_one_or_none()
        if known == fingerprint:
            return False
        if known is None:
            conn.execute(warehouse_targets.insert().values(
                destination_id=destination_id, fingerprint=fingerprint, updated_at=_now()))
            return False
        conn.execute(warehouse_targets.update().where(warehouse_targets.c.destination_id == destination_id)
                     .values(fingerprint=fingerprint, updated_at=_now()))
        conn.execute(warehouse_cursors.delete().where(warehouse_cursors.c.destination_id == destination_id))
        conn.execute(warehouse_columns.delete().where(warehouse_columns.c.destination_id == destination_id))
        warehouse_skipped.forget_all(conn, destination_id)  # the new warehouse gets every event
        return True


# ---------------------------------------------------------------- sync history


def start_sync(engine: Engine, destination_id: int, trigger: str) -> int:
    with engine.begin() as conn:
        return conn.execute(
            warehouse_syncs.insert().values(
                destination_id=destination_id, trigger=trigger, started_at=_now(), events=0, rows={}, notices=[]
            )
        ).inserted_primary_key[0]


def finish_sync(
    engine: Engine, sync_id: int, *, events: int, rows: dict[str, int], notices: list[str], error: str | None,
    skipped: int = 0,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            warehouse_syncs.update()
            .where(warehouse_syncs.c.id == sync_id)
            .values(finished_at=_now(), events=events, rows=rows, notices=notices, error=error, skipped=skipped)
        )


def close_interrupted(engine: Engine, destination_id: int) -> int:
    """Mark syncs that never finished (their process died) as interrupted; call under the lock."""
    with engine.begin() as conn:
        return conn.execute(
            warehouse_syncs.update()
            .where(warehouse_syncs.c.destination_id == destination_id, warehouse_syncs.c.finished_at.is_(None))
            .values(finished_at=_now(), error="interrupted: the process stopped before this sync finished")
        ).rowcount


def _sync_dict(row) -> dict[str, Any]:
    data = dict(row._mapping)
    data["rows"] = dict(data["rows"] or {})
    data["notices"] = list(data["notices"] or [])
    return data


def list_syncs(engine: Engine, destination_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """A destination's syncs, newest first."""
    with read_only(engine) as conn:
        rows = conn.execute(
            select(warehouse_syncs)
            .where(warehouse_syncs.c.destination_id == destination_id)
            .order_by(warehouse_syncs.c.id.desc())
            .limit(limit)
        ).all()
    return [_sync_dict(r) for r in rows]


def get_sync(engine: Engine, sync_id: int) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(select(warehouse_syncs).where(warehouse_syncs.c.id == sync_id)).one_or_none()
    return None if row is None else _sync_dict(row)


# ---------------------------------------------------------------- schema registry


def registered_columns(engine: Engine, destination_id: int) -> dict[str, dict[str, str]]:
    """{table: {column: type}} as recorded for a destination."""
    with read_only(engine) as conn:
        rows = conn.execute(
            select(warehouse_columns.c.table_name, warehouse_columns.c.column_name, warehouse_columns.c.type)
            .where(warehouse_columns.c.destination_id == destination_id)
        ).all()
    found: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        found.setdefault(table, {})[column] = kind
    return found


def record_columns(engine: Engine, destination_id: int, columns: dict[str, dict[str, str]]) -> None:
    """Add the columns not yet recorded (a column's type never changes once recorded)."""
    if not columns:
        return
    with engine.begin() as conn:
        known = {
            (t, c)
            for t, c in conn.execute(
                select(warehouse_columns.c.table_name, warehouse_columns.c.column_name).where(
                    warehouse_columns.c.destination_id == destination_id
                )
            )
        }
        new = [
            {"destination_id": destination_id, "table_name": t, "column_name": c, "type": k, "created_at": _now()}
            for t, cols in columns.items()
            for c, k in cols.items()
            if (t, c) not in known
        ]
        if new:
            conn.execute(warehouse_columns.insert(), new)

"""Events the collector refused one by one inside an accepted batch (over 32 KB, or breaking
one of the Tracking API's rules: server/ingest/validate.py).

A batch with such an event is still answered 200 and its other events are stored; that one is
not. So that this is never silent, each refusal leaves:

- a count per (source, reason) in ``rejected_event_counts`` (for ``/metrics`` and the web app);
- a small record in ``rejected_events``: messageId, type, event name, size, reason and message —
  never the payload itself. Only the newest ``KEEP`` records per source are kept, so a client
  that keeps sending bad events cannot fill the disk.

Both are written by the collector's group-commit writer, right after the batch's good events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Engine, Index, Integer, String, Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from server.store.engine import read_only
from server.store.schema import Id, UTCDateTime, metadata

KEEP = 200  # newest records kept per source

rejected_events = Table(
    "rejected_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_id", Id, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("message", String(300), nullable=False),
    Column("message_id", String(100), nullable=True),
    Column("type", String(20), nullable=True),
    Column("event", String(200), nullable=True),
    Column("size", Integer, nullable=False),
)
Index("ix_rejected_events_source_id_id", rejected_events.c.source_id, rejected_events.c.id)

rejected_event_counts = Table(
    "rejected_event_counts",
    metadata,
    Column("source_id", Id, primary_key=True),
    Column("reason", String(40), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

_TRIM = text(
    "DELETE FROM rejected_events WHERE source_id = :source_id AND id < ("
    "SELECT min(id) FROM (SELECT id FROM rejected_events WHERE source_id = :source_id "
    "ORDER BY id DESC LIMIT :keep) AS newest)"
)


def record(conn: Connection, records: list[dict[str, Any]]) -> None:
    """Store refusal records (keys as the ``rejected_events`` columns) and bump their counts,
    in one transaction on ``conn`` (a Connection not in a transaction)."""
    if not records:
        return
    counts: dict[tuple[int, str], int] = {}
    for r in records:
        key = (r["source_id"], r["reason"])
        counts[key] = counts.get(key, 0) + 1
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    with conn.begin():
        conn.execute(rejected_events.insert(), records)
        for (source_id, reason), n in sorted(counts.items()):
            stmt = insert(rejected_event_counts).values(source_id=source_id, reason=reason, count=n)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["source_id", "reason"],
                set_={"count": rejected_event_counts.c.count + stmt.excluded.count}))
        for source_id in sorted({r["source_id"] for r in records}):
            conn.execute(_TRIM, {"source_id": source_id, "keep": KEEP})


def counts(engine: Engine, source_id: int | None = None) -> dict[tuple[int, str], int]:
    """{(source_id, reason): refused events so far}."""
    query = select(rejected_event_counts)
    if source_id is not None:
        query = query.where(rejected_event_counts.c.source_id == source_id)
    with read_only(engine) as conn:
        return {(r.source_id, r.reason): r.count for r in conn.execute(query)}


def recent(engine: Engine, source_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """A source's newest refusal records, newest first."""
    query = (select(rejected_events).where(rejected_events.c.source_id == source_id)
             .order_by(rejected_events.c.id.desc()).limit(limit))
    with read_only(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def total(engine: Engine) -> int:
    with read_only(engine) as conn:
        return conn.execute(select(func.coalesce(func.sum(rejected_event_counts.c.count), 0))).scalar_one()


def as_json(record_row: dict[str, Any]) -> dict[str, Any]:
    out = dict(record_row)
    at = out.get("received_at")
    if isinstance(at, datetime):
        out["received_at"] = at.isoformat()
    return out

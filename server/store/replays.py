"""History replays: the ``replays`` table and its progress readout (docs/delivery.md, "History
replay"). Queueing a replay's jobs — in bounded, resumable chunks at its release rate — is
``server/store/replay_queue.py``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Connection, Engine, Index, Integer, String, Table, func, inspect, select, text

from server.store.delivery import DEAD, DELIVERED, PENDING, SKIPPED, delivery_jobs
from server.store.engine import read_only
from server.store.schema import Id, UTCDateTime, metadata

replays = Table(
    "replays",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("destination_id", Id, nullable=False),
    Column("since", UTCDateTime(), nullable=False),
    Column("until", UTCDateTime(), nullable=True),
    Column("types", JSON, nullable=True),
    Column("event_names", JSON, nullable=True),
    Column("queued", Integer, nullable=False, default=0),
    Column("state", String(10), nullable=False),  # queuing | queued
    # Due time of its last job: the next replay's jobs are released after the latest of these.
    Column("release_until", UTCDateTime(), nullable=True),
    Column("actor", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    sqlite_autoincrement=True,
)


def migrate(conn: Connection) -> None:
    """Migration 8: destinations.filters, delivery_jobs.replay_id (+ index), the due-jobs index,
    the replays table.
    A database created after they were declared has them already."""
    replays.create(conn, checkfirst=True)
    inspector = inspect(conn)
    if "filters" not in {c["name"] for c in inspector.get_columns("destinations")}:
        conn.execute(text("ALTER TABLE destinations ADD COLUMN filters JSON"))
    if "replay_id" not in {c["name"] for c in inspector.get_columns("delivery_jobs")}:
        conn.execute(text("ALTER TABLE delivery_jobs ADD COLUMN replay_id BIGINT"))
    for index in delivery_jobs.indexes:
        if index.name in ("ix_delivery_jobs_replay_id", "ix_delivery_jobs_due"):
            index.create(conn, checkfirst=True)


def get_replay(engine: Engine, replay_id: int) -> dict[str, Any]:
    return list_replays(engine, None, replay_id=replay_id)[0]


def list_replays(engine: Engine, destination_id: int | None, *, replay_id: int | None = None,
                 limit: int = 50) -> list[dict[str, Any]]:
    """Replays, newest first, each with its jobs counted by status (``delivered``, ``pending``…)."""
    query = select(replays).order_by(replays.c.id.desc()).limit(limit)
    if destination_id is not None:
        query = query.where(replays.c.destination_id == destination_id)
    if replay_id is not None:
        query = query.where(replays.c.id == replay_id)
    with read_only(engine) as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
        ids = [r["id"] for r in rows]
        counts: dict[int, dict[str, int]] = {}
        if ids:
            for rid, status, n in conn.execute(
                select(delivery_jobs.c.replay_id, delivery_jobs.c.status, func.count())
                .where(delivery_jobs.c.replay_id.in_(ids)).group_by(delivery_jobs.c.replay_id, delivery_jobs.c.status)
            ):
                counts.setdefault(rid, {})[status] = n
    for row in rows:
        c = counts.get(row["id"], {})
        row.update(delivered=c.get(DELIVERED, 0), dead=c.get(DEAD, 0), skipped=c.get(SKIPPED, 0),
                   pending=sum(c.get(s, 0) for s in PENDING))
    return rows


Index("ix_replays_destination_created", replays.c.destination_id, replays.c.created_at)

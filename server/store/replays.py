"""History replay: queue a destination's share of the stored events in a time window again
(docs/delivery.md, "History replay").

A replay reads the source's events in the window (oldest first, in batches, each batch its own
transaction so live writers are never locked out for long), asks the caller's ``routes(payload,
type)`` whether the destination takes each one (routing rules, filters, current settings: the
delivery plane decides), and queues a job per event:

- an event with no job for the destination gets one; one whose job is finished (delivered,
  skipped, dead) is queued again; one whose job is still pending is left alone (it is on its way);
- only events the fan-out already passed (``id <= cursor``) are considered: later ones get
  their jobs from the fan-out, and the one-job-per-(destination, event) rule is never broken.

**Bounded rate.** Replay jobs are released by their due time: the n-th one queued is due
``n / rate`` seconds after the last replay job already scheduled (``replays.release_until``, over
every replay, in every process: the schedule is in the database), so all replays together release at most ``rate``
events per second and live jobs, due at once, go first. A replay job's ``created_at`` is that
release time: its retry window and its delivery latency count from it, not from the original
receipt.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson
from sqlalchemy import JSON, Column, Connection, Engine, Index, Integer, String, Table, func, inspect, select, text

from server.store.delivery import (
    DEAD, DELIVERED, FANOUT_CURSOR, PENDING, QUEUED, SKIPPED, delivery_cursors, delivery_jobs, utcnow,
    write_transaction,
)
from server.store import notify
from server.store.engine import read_only
from server.store.events import events
from server.store.schema import Id, UTCDateTime, destinations, metadata

BATCH = 500
# Queuing works at most this share of the time (parsing and routing hold the GIL, inserting holds
# the SQLite write lock): after each batch it pauses as long as the batch took, so live traffic in
# the same process keeps its pace while a big window is queued (bench/replay.py).
QUEUE_DUTY = 0.5

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


def queue_replay(
    engine: Engine, destination_id: int, *, since: datetime, until: datetime | None, types: list[str] | None,
    event_names: list[str] | None, routes: Callable[[dict[str, Any], str], bool], rate: float, actor: str,
    decode: Callable[[str], Any],
) -> dict[str, Any]:
    """Queue the window for ``destination_id``; return the replay row (``queued`` = jobs queued)."""
    with write_transaction(engine) as conn:
        source_id = conn.execute(
            select(destinations.c.source_id).where(destinations.c.id == destination_id)
        ).scalar_one()
        replay_id = conn.execute(replays.insert().values(
            destination_id=destination_id, since=since, until=until, types=types, event_names=event_names,
            queued=0, state="queuing", actor=actor, created_at=utcnow(),
        )).inserted_primary_key[0]
        cursor = conn.execute(
            select(delivery_cursors.c.event_id).where(delivery_cursors.c.name == FANOUT_CURSOR)
        ).scalar_one_or_none() or 0
    queued, after = 0, 0
    while True:
        began = time.monotonic()
        query = (select(events.c.id, events.c.type, events.c.payload)
                 .where(events.c.source_id == source_id, events.c.id > after, events.c.id <= cursor,
                        events.c.received_at >= since)
                 .order_by(events.c.id).limit(BATCH))
        if until is not None:
            query = query.where(events.c.received_at < until)
        if types:
            query = query.where(events.c.type.in_(types))
        with read_only(engine) as conn:
            rows = conn.execute(query).all()
        if not rows:
            break
        after = rows[-1].id
        chosen = []
        for row in rows:
            payload = decode(row.payload)
            if event_names and not (row.type == "track" and payload.get("event") in event_names):
                continue
            if routes(payload, row.type):
                chosen.append(row.id)
        if chosen:
            queued += _queue(engine, destination_id, replay_id, chosen, rate)
        time.sleep((time.monotonic() - began) * (1 / QUEUE_DUTY - 1))
    with write_transaction(engine) as conn:
        conn.execute(replays.update().where(replays.c.id == replay_id).values(queued=queued, state="queued"))
    return {**get_replay(engine, replay_id)}


def _queue(engine: Engine, destination_id: int, replay_id: int, event_ids: list[int], rate: float) -> int:
    with write_transaction(engine) as conn:
        now = utcnow()
        # The release schedule of every replay, in the small replays table (one indexed read).
        last = conn.execute(select(func.max(replays.c.release_until))).scalar_one_or_none()
        start = max(now, last) if last is not None else now
        existing = dict(conn.execute(
            select(delivery_jobs.c.event_id, delivery_jobs.c.status)
            .where(delivery_jobs.c.destination_id == destination_id, delivery_jobs.c.event_id.in_(event_ids))
        ).all())
        step = 1.0 / rate
        fresh = [e for e in event_ids if e not in existing]
        again = [e for e in event_ids if existing.get(e) in (DELIVERED, SKIPPED, DEAD)]
        wanted = set(fresh) | set(again)
        order = {e: n for n, e in enumerate(e for e in event_ids if e in wanted)}

        def due(event_id: int) -> datetime:
            return start + timedelta(seconds=(order[event_id] + 1) * step)

        if fresh:
            _insert(conn, destination_id, replay_id, [(e, due(e)) for e in fresh])
        for event_id in again:
            conn.execute(delivery_jobs.update().where(
                delivery_jobs.c.destination_id == destination_id, delivery_jobs.c.event_id == event_id,
            ).values(status=QUEUED, created_at=due(event_id), next_attempt_at=due(event_id), finished_at=None,
                     lease_until=None, lease_owner=None, replay_id=replay_id, latency_ms=None))
        if order:
            notify.JOBS.publish(conn, destination_id)  # the workers sleep until the first one is due
            conn.execute(replays.update().where(replays.c.id == replay_id).values(
                queued=replays.c.queued + len(order), release_until=start + timedelta(seconds=len(order) * step)))
    return len(order)


# One statement per batch, as the fan-out's queue_jobs does: binding 1,000 rows' datetimes one by
# one through SQLAlchemy took most of a replay's time. Each job is (event id, due time).
_SQLITE_INSERT = (
    "INSERT INTO delivery_jobs (destination_id, source_id, event_id, message_id, event_type, received_at,"
    " created_at, status, attempts, next_attempt_at, replay_id, takeovers)"
    " SELECT ?, e.source_id, e.id, e.message_id, e.type, e.received_at, json_extract(j.value, '$[1]'), ?, 0,"
    " json_extract(j.value, '$[1]'), ?, 0"
    " FROM json_each(?) AS j JOIN events AS e ON e.id = json_extract(j.value, '$[0]') ORDER BY j.key"
)
_POSTGRES_INSERT = text(
    "INSERT INTO delivery_jobs (destination_id, source_id, event_id, message_id, event_type, received_at,"
    " created_at, status, attempts, next_attempt_at, replay_id, takeovers)"
    " SELECT :destination, e.source_id, e.id, e.message_id, e.type, e.received_at, j.due, :status, 0, j.due,"
    " :replay, 0 FROM unnest(CAST(:events AS BIGINT[]), CAST(:dues AS TIMESTAMPTZ[])) WITH ORDINALITY"
    " AS j(event_id, due, n) JOIN events AS e ON e.id = j.event_id ORDER BY j.n"
)


def _insert(conn: Connection, destination_id: int, replay_id: int, jobs: list[tuple[int, datetime]]) -> None:
    if conn.dialect.name == "sqlite":
        pairs = [[e, due.astimezone(timezone.utc).isoformat(sep=" ", timespec="microseconds")[:26]] for e, due in jobs]
        conn.exec_driver_sql(_SQLITE_INSERT, (destination_id, QUEUED, replay_id, orjson.dumps(pairs).decode()))
    else:
        conn.execute(_POSTGRES_INSERT, {"destination": destination_id, "status": QUEUED, "replay": replay_id,
                                        "events": [e for e, _ in jobs], "dues": [d for _, d in jobs]})


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

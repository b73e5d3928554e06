"""Queueing a history replay's jobs: bounded chunks, resumable, at the replay's release rate
(docs/delivery.md, "History replay").

A replay considers the source's events in its window, oldest first, ``BATCH`` at a time. For each
chunk the caller's ``routes(payload, type)`` says whether the destination takes an event (routing
rules, filters, current settings: the delivery plane decides), and a job is queued per event:

- an event with no job for the destination gets one; one whose job is finished (delivered,
  skipped, dead) is queued again; one whose job is still pending is left alone (it is on its way);
- only events the fan-out had passed when the replay began are considered (``upto``): later ones
  get their jobs from the fan-out, and the one-job-per-(destination, event) rule is never broken.

**Resumable, exactly once.** The replay's progress — the last event considered — is a row of
``delivery_cursors`` (``replay:<id>``, beside ``replay:<id>:upto``), moved in the same transaction
that inserts the chunk's jobs, and only from the value the chunk was read after (compare and
swap). A process killed mid-chunk leaves both untouched; a chunk two processes raced for is
committed by one of them. Whoever continues (``queue_step``) starts after the last committed chunk.

**Paced.** The request that starts a replay queues its first ``SYNC_EVENTS`` events itself (a small
window is complete when it answers); the delivery workers queue the rest a chunk at a time, only
as their release schedule runs short (``server/delivery/replay_queuer.py``), so a 100k-event
window costs the serving process no burst of parsing and routing beside live traffic.

**Bounded rate.** Jobs are released in ticks of ``TICK_S``: ``rate × TICK_S`` of them due together,
one tick after another, after the last replay job already scheduled (``replays.release_until``,
over every replay, in every process), so all replays together release at most ``rate`` events per
second and live jobs, due at once, go first. A replay
job's ``created_at`` is that release time: its retry window and latency count from it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

import orjson
from sqlalchemy import Connection, Engine, func, select, text

from server.store import notify
from server.store.delivery import (
    DEAD, DELIVERED, FANOUT_CURSOR, QUEUED, SKIPPED, delivery_cursors, delivery_jobs, utcnow, write_transaction,
)
from server.store.engine import read_only
from server.store.events import events
from server.store.replays import get_replay, replays
from server.store.schema import destinations

BATCH = 500  # events considered per chunk: one short write transaction each
SYNC_EVENTS = 2_000  # events the starting request considers itself; the workers queue the rest
# Jobs are released in ticks: rate × TICK_S of them due together every TICK_S seconds (10 every
# 50 ms at 200/s). Due one by one (every 5 ms), the replay's lane claimed about once per job — a
# write transaction, an fsync, the SQLite write lock — and live lanes queued behind those commits.
TICK_S = 0.05

Routes = Callable[[dict[str, Any], str], bool]


class Step(NamedTuple):
    more: bool  # the replay is still queuing
    release_until: datetime | None  # due time of its last job so far


def _marks(replay_id: int) -> tuple[str, str]:
    return f"replay:{replay_id}", f"replay:{replay_id}:upto"


def create_replay(engine: Engine, destination_id: int, *, since: datetime, until: datetime | None,
                  types: list[str] | None, event_names: list[str] | None, actor: str) -> int:
    """The replay row (``queuing``) and its progress marks, in one transaction; return its id."""
    with write_transaction(engine) as conn:
        replay_id = conn.execute(replays.insert().values(
            destination_id=destination_id, since=since, until=until, types=types, event_names=event_names,
            queued=0, state="queuing", actor=actor, created_at=utcnow(),
        )).inserted_primary_key[0]
        upto = conn.execute(
            select(delivery_cursors.c.event_id).where(delivery_cursors.c.name == FANOUT_CURSOR)
        ).scalar_one_or_none() or 0
        at, end = _marks(replay_id)
        conn.execute(delivery_cursors.insert(), [{"name": at, "event_id": 0}, {"name": end, "event_id": upto}])
    return replay_id


def queuing_replays(engine: Engine) -> list[dict[str, Any]]:
    """Replays still being queued (id, destination_id, release_until), oldest first."""
    with read_only(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(replays.c.id, replays.c.destination_id, replays.c.release_until)
            .where(replays.c.state == "queuing").order_by(replays.c.id))]


def queue_step(engine: Engine, replay_id: int, routes: Routes, rate: float, *,
               decode: Callable[[str], Any] = orjson.loads, batch: int = BATCH, durable: bool = True) -> Step:
    """Consider the replay's next ``batch`` events and queue their jobs; the last chunk marks the
    replay ``queued``. Safe to call from several processes at once (each chunk commits once).
    The workers' steps pass ``durable=False`` (``server/store/engine.py``, ``bookkeeping``): a
    chunk lost to a power cut leaves the progress mark where it was, and is queued again."""
    at, end = _marks(replay_id)
    with read_only(engine) as conn:
        replay = conn.execute(select(replays).where(replays.c.id == replay_id)).one_or_none()
        marks = dict(conn.execute(select(delivery_cursors.c.name, delivery_cursors.c.event_id)
                                  .where(delivery_cursors.c.name.in_([at, end]))).all())
        source_id = None if replay is None else conn.execute(
            select(destinations.c.source_id).where(destinations.c.id == replay.destination_id)).scalar_one_or_none()
    if replay is None or replay.state != "queuing" or len(marks) < 2:
        return Step(False, None if replay is None else replay.release_until)
    after, rows = marks[at], []
    if source_id is not None:  # else the destination was removed: nothing more to queue
        query = (select(events.c.id, events.c.type, events.c.payload)
                 .where(events.c.source_id == source_id, events.c.id > after, events.c.id <= marks[end],
                        events.c.received_at >= replay.since)
                 .order_by(events.c.id).limit(batch))
        if replay.until is not None:
            query = query.where(events.c.received_at < replay.until)
        if replay.types:
            query = query.where(events.c.type.in_(replay.types))
        with read_only(engine) as conn:
            rows = conn.execute(query).all()
    chosen = []
    for row in rows:
        payload = decode(row.payload)
        if replay.event_names and not (row.type == "track" and payload.get("event") in replay.event_names):
            continue
        if routes(payload, row.type):
            chosen.append(row.id)
    done = len(rows) < batch
    with write_transaction(engine, durable=durable) as conn:
        moved = conn.execute(delivery_cursors.update().where(
            delivery_cursors.c.name == at, delivery_cursors.c.event_id == after,
        ).values(event_id=rows[-1].id if rows else after)).rowcount
        if not moved:  # another process committed this chunk (or finished the replay) first
            return Step(True, replay.release_until)
        if chosen:
            _queue(conn, replay.destination_id, replay_id, chosen, rate)
        if done:
            conn.execute(replays.update().where(replays.c.id == replay_id).values(state="queued"))
            conn.execute(delivery_cursors.delete().where(delivery_cursors.c.name.in_([at, end])))
        release_until = conn.execute(
            select(replays.c.release_until).where(replays.c.id == replay_id)).scalar_one()
    return Step(not done, release_until)


def queue_replay(engine: Engine, destination_id: int, *, since: datetime, until: datetime | None,
                 types: list[str] | None, event_names: list[str] | None, routes: Routes, rate: float, actor: str,
                 decode: Callable[[str], Any] = orjson.loads, sync_events: int | None = None) -> dict[str, Any]:
    """Start a replay and queue its first ``sync_events`` events; return the replay row (``state``
    ``queuing`` when the workers queue the rest)."""
    replay_id = create_replay(engine, destination_id, since=since, until=until, types=types,
                              event_names=event_names, actor=actor)
    considered, sync_events = 0, SYNC_EVENTS if sync_events is None else sync_events
    while considered < sync_events:
        size = min(BATCH, sync_events - considered)
        if not queue_step(engine, replay_id, routes, rate, decode=decode, batch=size).more:
            break
        considered += size
    else:
        with write_transaction(engine) as conn:
            notify.JOBS.publish(conn, destination_id)  # the workers queue the rest
    return {**get_replay(engine, replay_id)}


def _queue(conn: Connection, destination_id: int, replay_id: int, event_ids: list[int], rate: float) -> int:
    now = utcnow()
    # The release schedule of every replay, in the small replays table (one indexed read).
    last = conn.execute(select(func.max(replays.c.release_until))).scalar_one_or_none()
    start = max(now, last) if last is not None else now
    existing = dict(conn.execute(
        select(delivery_jobs.c.event_id, delivery_jobs.c.status)
        .where(delivery_jobs.c.destination_id == destination_id, delivery_jobs.c.event_id.in_(event_ids))
    ).all())
    fresh = [e for e in event_ids if e not in existing]
    again = [e for e in event_ids if existing.get(e) in (DELIVERED, SKIPPED, DEAD)]
    wanted = set(fresh) | set(again)
    order = {e: n for n, e in enumerate(e for e in event_ids if e in wanted)}
    per_tick = max(1, round(rate * TICK_S))

    def due(event_id: int) -> datetime:
        return start + timedelta(seconds=(order[event_id] // per_tick + 1) * per_tick / rate)

    if fresh:
        _insert(conn, destination_id, replay_id, [(e, due(e)) for e in fresh])
    # Jobs replayed before (delivered, skipped or dead) are queued again: one statement per tick
    # (the events due together), not per event — a hundred single-row updates held SQLite's write
    # lock for ~20 ms a chunk, and live deliveries waited behind them (bench/replay.py).
    ticks: dict[datetime, list[int]] = {}
    for event_id in again:
        ticks.setdefault(due(event_id), []).append(event_id)
    for when, ids in ticks.items():
        conn.execute(delivery_jobs.update().where(
            delivery_jobs.c.destination_id == destination_id, delivery_jobs.c.event_id.in_(ids),
        ).values(status=QUEUED, created_at=when, next_attempt_at=when, finished_at=None,
                 lease_until=None, lease_owner=None, replay_id=replay_id, latency_ms=None))
    if order:
        notify.JOBS.publish(conn, destination_id)  # the workers sleep until the first one is due
        conn.execute(replays.update().where(replays.c.id == replay_id).values(
            queued=replays.c.queued + len(order), release_until=due(max(order, key=order.__getitem__))))
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

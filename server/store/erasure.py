"""Erasing users from the store, and pruning old data: the SQL behind regulations and retention.

User deletion walks the event log by id, ``batch`` ids at a time, so each transaction is short
(the collector and the workers keep writing meanwhile) and the walk can resume from the last id
it finished (kept in the regulation's row, in the same transaction as the batch). Events carry
``userId`` only inside their JSON payload, so each window is narrowed with ``LIKE`` on the exact
text orjson writes (``"userId":"…"``) and every candidate is then checked on the parsed payload.

With each event go its delivery jobs (queued, delivered, and dead ones: the dead letters) and
their attempts (the attempt records hold the request sent to the vendor, i.e. the user's data).

Retention (``prune_events``) removes events older than a cut-off only when no job of theirs is
still to be delivered or kept as a dead letter (``KEEPING``), and only below the fan-out cursor
and every warehouse's cursor (an event not yet fanned out or loaded has no jobs yet, but is not
done). ``prune_dead_letters`` removes dead jobs that finished before their own cut-off.
"""

from __future__ import annotations

from datetime import datetime
from contextlib import contextmanager
from typing import Callable, Iterator

import orjson
from sqlalchemy import Connection, Engine, delete, func, or_, select, text

from server.store.delivery import DEAD, FANOUT_CURSOR, QUEUED, RETRYING, delivery_attempts, delivery_cursors, delivery_jobs
from server.store.engine import read_only
from server.store.events import events
from server.store.fanout import routable_in
from server.store.schema import destinations
from server.store.warehouse import warehouse_cursors

KEEPING = (QUEUED, RETRYING, DEAD)  # an event with such a job stays in the log


# Characters of a userId's JSON text that go into its LIKE pattern. SQLite refuses patterns over
# 50,000 bytes (SQLITE_MAX_LIKE_PATTERN_LENGTH), and a userId may be 32 KB: a longer text is
# narrowed by its start only (any prefix of it is in the payload too); the check on the parsed
# payload decides either way.
LIKE_CHARS = 2000


def _like_pattern(user_id: str) -> str:
    text = ('"userId":' + orjson.dumps(user_id).decode())[:LIKE_CHARS]
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _drop_events(conn: Connection, event_ids: list[int]) -> dict[str, int]:
    """Delete these events with their jobs and attempts; counts by kind."""
    if not event_ids:
        return {"events": 0, "delivery_jobs": 0, "dead_letters": 0}
    jobs = conn.execute(select(delivery_jobs.c.id, delivery_jobs.c.status).where(delivery_jobs.c.event_id.in_(event_ids))).all()
    job_ids = [j.id for j in jobs]
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start:start + 500]
        conn.execute(delete(delivery_attempts).where(delivery_attempts.c.job_id.in_(chunk)))
        conn.execute(delete(delivery_jobs).where(delivery_jobs.c.id.in_(chunk)))
    removed = conn.execute(delete(events).where(events.c.id.in_(event_ids))).rowcount
    dead = sum(1 for j in jobs if j.status == DEAD)
    return {"events": removed, "delivery_jobs": len(jobs) - dead, "dead_letters": dead}


def max_event_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.max(events.c.id))).scalar() or 0


def erase_users_batch(
    engine: Engine,
    user_ids: list[str],
    source_ids: list[int] | None,
    after_id: int,
    up_to: int,
    batch: int,
    save: Callable[[Connection, int, dict[str, int]], bool],
) -> tuple[int, dict[str, int]] | None:
    """Erase the users' events among the next ``batch`` events after ``after_id`` (up to
    ``up_to``); ``save(conn, last_id, counts)`` records progress in the same transaction (False:
    we lost the lease, the batch is rolled back and None returned). Returns (last id covered,
    counts of this batch). Windows are counted in events, not ids, so gaps in the log (pruned
    ranges) cost nothing."""
    with read_only(engine) as conn:
        last = conn.execute(select(events.c.id).where(events.c.id > after_id, events.c.id <= up_to)
                            .order_by(events.c.id).offset(batch - 1).limit(1)).scalar() or up_to
    wanted = set(user_ids)
    query = select(events.c.id, events.c.payload).where(
        events.c.id > after_id, events.c.id <= last,
        or_(*[events.c.payload.like(_like_pattern(u), escape="\\") for u in user_ids]),
    )
    if source_ids:
        query = query.where(events.c.source_id.in_(source_ids))
    with engine.begin() as conn:
        matches = [row.id for row in conn.execute(query) if orjson.loads(row.payload).get("userId") in wanted]
        counts = _drop_events(conn, matches)
        if not save(conn, last, counts):
            conn.rollback()
            return None
    return last, counts


# ---------------------------------------------------------------- retention


def _safe_ceiling(conn: Connection) -> dict[int | None, int]:
    """Per source (None: any source), the highest event id every reader has passed.

    While no destination can get jobs, the delivery service does not move the fan-out cursor
    (an idle worker writes nothing, issue #20) and, when one appears, jumps it over the events
    received before (``fanout.skip_unrouted``): those events owe delivery nothing, so the
    fan-out cursor does not hold them back. (Retention only takes events days old, long before
    any destination that could appear meanwhile.)"""
    fanout = conn.execute(select(delivery_cursors.c.event_id).where(delivery_cursors.c.name == FANOUT_CURSOR)).scalar()
    if not routable_in(conn):
        fanout = conn.execute(select(func.max(events.c.id))).scalar()
    ceilings: dict[int | None, int] = {None: fanout or 0}
    rows = conn.execute(
        select(destinations.c.source_id, func.min(warehouse_cursors.c.last_event_id))
        .join(destinations, destinations.c.id == warehouse_cursors.c.destination_id)
        .group_by(destinations.c.source_id)
    ).all()
    for source_id, cursor in rows:
        ceilings[source_id] = min(cursor, ceilings[None])
    return ceilings


def prune_events(engine: Engine, older_than: datetime, batch: int = 1000, max_batches: int = 1000) -> int:
    """Delete events received before ``older_than`` that every reader is done with; how many."""
    total = 0
    after = 0
    for _ in range(max_batches):
        with engine.begin() as conn:
            ceilings = _safe_ceiling(conn)
            default = ceilings[None]
            candidates = conn.execute(
                select(events.c.id, events.c.source_id).where(
                    events.c.id > after, events.c.id <= default, events.c.received_at < older_than)
                .order_by(events.c.id).limit(batch)
            ).all()
            if not candidates:
                break
            after = candidates[-1].id
            ids = [c.id for c in candidates if c.id <= ceilings.get(c.source_id, default)]
            if ids:
                busy = set(conn.execute(select(delivery_jobs.c.event_id).where(
                    delivery_jobs.c.event_id.in_(ids), delivery_jobs.c.status.in_(KEEPING))).scalars())
                total += _drop_events(conn, [i for i in ids if i not in busy])["events"]
    return total


def prune_dead_letters(engine: Engine, older_than: datetime, batch: int = 1000, max_batches: int = 1000) -> int:
    total = 0
    for _ in range(max_batches):
        with engine.begin() as conn:
            ids = list(conn.execute(select(delivery_jobs.c.id).where(
                delivery_jobs.c.status == DEAD, delivery_jobs.c.finished_at < older_than).limit(batch)).scalars())
            if not ids:
                break
            conn.execute(delete(delivery_attempts).where(delivery_attempts.c.job_id.in_(ids)))
            total += conn.execute(delete(delivery_jobs).where(delivery_jobs.c.id.in_(ids))).rowcount
    return total




_RETENTION_LOCK = 0x5B0A_0016


@contextmanager
def retention_lock(engine: Engine) -> Iterator[bool]:
    """One process at a time prunes: a PostgreSQL session advisory lock (released if the process
    dies); True if we hold it. On SQLite every write is serialised anyway: always True."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        mine = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _RETENTION_LOCK}).scalar())
        conn.commit()
        try:
            yield mine
        finally:
            if mine:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _RETENTION_LOCK})
                conn.commit()


def drop_orphan_attempts(engine: Engine) -> int:
    """Attempt records whose job is gone: a worker that was sending a job while it was erased
    records its attempt (the request it sent, i.e. the user's data) after the job went."""
    with engine.begin() as conn:
        orphans = ~select(delivery_jobs.c.id).where(delivery_jobs.c.id == delivery_attempts.c.job_id).exists()
        return conn.execute(delete(delivery_attempts).where(orphans)).rowcount

"""Delivery tables: the fan-out cursor, one job per (event, cloud destination), and attempts.

A job moves ``queued`` → (``retrying`` …) → ``delivered`` | ``dead`` | ``skipped``. A worker owns
a job while ``lease_until`` is in the future; a crashed worker's lease simply runs out and the
job is claimed again (at-least-once, same idempotency key). ``created_at`` starts the retry
window (a replay restarts it); ``received_at`` is the event's receipt time, the start of the
receipt→delivery latency the stats report.

Every function takes the engine first and is synchronous (call it from a thread in async code).
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from sqlalchemy import (
    Column, Connection, Engine, Float, Index, Integer, String, Table, Text, UniqueConstraint, and_, bindparam, case, func, or_,
    select, text,
)

import orjson

from server.store import notify
from server.store.delivery_sqlite import SqliteDelivery
from server.store.engine import bookkeeping, read_only
from server.store.events import events
from server.store.schema import Id, UTCDateTime, destinations, metadata

QUEUED, RETRYING, DELIVERED, DEAD, SKIPPED = "queued", "retrying", "delivered", "dead", "skipped"
PENDING = (QUEUED, RETRYING)
STATUSES = (QUEUED, RETRYING, DELIVERED, DEAD, SKIPPED)

delivery_cursors = Table(
    "delivery_cursors",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("event_id", Id, nullable=False),
)

delivery_jobs = Table(
    "delivery_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("destination_id", Id, nullable=False),
    Column("source_id", Id, nullable=False),
    Column("event_id", Id, nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("event_type", String(10), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    # Times it was claimed again while another worker held it (taken over after that worker
    # stopped heart-beating, or its lease ran out): it may have reached the vendor twice.
    # Added by migration 3 (server/store/workers.py).
    Column("takeovers", Integer, nullable=False, server_default="0"),
    # The history replay that queued it (server/store/replays.py), or NULL for live traffic;
    # such a job's created_at is the time the replay released it. Added by migration 8.
    # DEAD_LETTER_REPLAY (0) marks dead letters queued again by "Replay dead letters" (no replays row).
    Column("replay_id", Id, nullable=True, index=True),
    # One job per event and destination: a second fan-out of the same event fails loudly.
    UniqueConstraint("destination_id", "event_id", name="uq_delivery_jobs_destination_event"),
)
# The claim query: pending jobs of one destination that are due.
Index("ix_delivery_jobs_claim", delivery_jobs.c.destination_id, delivery_jobs.c.status, delivery_jobs.c.next_attempt_at)
Index("ix_delivery_jobs_finished", delivery_jobs.c.destination_id, delivery_jobs.c.finished_at)
# The dispatcher's look for destinations with due jobs (ready_destinations): only the due rows are
# read, not every pending one (a history replay queues 100k jobs due over minutes). Migration 8.
Index("ix_delivery_jobs_due", delivery_jobs.c.status, delivery_jobs.c.next_attempt_at)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, nullable=False, index=True),
    Column("destination_id", Id, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("outcome", String(10), nullable=False),  # delivered | retry | dead
    Column("request", Text, nullable=True),  # JSON, secrets redacted
    Column("status", Integer, nullable=True),
    Column("response", Text, nullable=True),  # body excerpt
    Column("error", Text, nullable=True),
    Column("latency_ms", Float, nullable=True),
)
Index("ix_delivery_attempts_dest_at", delivery_attempts.c.destination_id, delivery_attempts.c.at)

FANOUT_CURSOR = "fanout"

# SQLite's claims and results without SQLAlchemy's per-row work (issue #18).
_sqlite = SqliteDelivery(delivery_jobs, (QUEUED, RETRYING))


# SQLite has one writer at a time, and a writer that finds the lock taken sleeps in SQLite's
# busy handler (1, 2, 5 … 100 ms steps). Our own threads (fan-out, claims, results) queue on this
# lock instead, so they never sleep on each other; other writers still go through busy_timeout.
_sqlite_write_lock = threading.Lock()


@contextlib.contextmanager
def write_transaction(engine: Engine, *, durable: bool = True) -> Iterator[Connection]:
    """One write transaction; what it published on the change bus reaches this process's
    subscribers once it has committed (other processes hear it through NOTIFY). ``durable=False``
    is for the delivery plane's bookkeeping, which commits without waiting for the disk
    (``server/store/engine.py``, ``bookkeeping``: safe, and why)."""
    lock = _sqlite_write_lock if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    with lock, engine.connect() as conn:
        with (conn if durable else bookkeeping(conn)).begin():
            try:
                yield conn
            finally:
                published = notify.take_published(conn)  # before the connection goes back to the pool
    notify.deliver_committed(published)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _dicts(rows) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in rows]


# ---------------------------------------------------------------- queueing

# A fan-out pass's jobs in one statement, whatever their number: each job travels as its
# (destination_id, event_id) and the rest is copied from its event row or is the same for all.
# SQLAlchemy's executemany spent ~15 µs a job binding values (datetimes above all); with a
# neighbour (say, one that hangs) that doubled the fan-out's share of a delivered event's CPU.
# SQLite reads the pairs from one JSON array, PostgreSQL from two arrays; both keep their order.
_SQLITE_QUEUE_JOBS = (
    "INSERT INTO delivery_jobs (destination_id, source_id, event_id, message_id, event_type, received_at,"
    " created_at, status, attempts, next_attempt_at)"
    " SELECT json_extract(j.value, '$[0]'), e.source_id, e.id, e.message_id, e.type, e.received_at, ?, ?, 0, ?"
    " FROM json_each(?) AS j JOIN events AS e ON e.id = json_extract(j.value, '$[1]') ORDER BY j.key"
)
_POSTGRES_QUEUE_JOBS = text(
    "INSERT INTO delivery_jobs (destination_id, source_id, event_id, message_id, event_type, received_at,"
    " created_at, status, attempts, next_attempt_at)"
    " SELECT j.destination_id, e.source_id, e.id, e.message_id, e.type, e.received_at, :now, :status, 0, :now"
    " FROM unnest(CAST(:destinations AS BIGINT[]), CAST(:events AS BIGINT[])) WITH ORDINALITY"
    " AS j(destination_id, event_id, n) JOIN events AS e ON e.id = j.event_id ORDER BY j.n"
)


def queue_jobs(conn: Connection, jobs: list[tuple[int, int]], now: datetime) -> None:
    """Insert a queued job, due ``now``, for each (destination_id, event_id), in this order."""
    if not jobs:
        return
    if conn.dialect.name == "sqlite":
        stamp = now.astimezone(timezone.utc).isoformat(sep=" ", timespec="microseconds")[:26]
        conn.exec_driver_sql(_SQLITE_QUEUE_JOBS, (stamp, QUEUED, stamp, orjson.dumps(jobs).decode()))
    else:
        conn.execute(_POSTGRES_QUEUE_JOBS, {
            "now": now, "status": QUEUED,
            "destinations": [d for d, _ in jobs], "events": [e for _, e in jobs],
        })


# ---------------------------------------------------------------- claiming and finishing


def claim(engine: Engine, destination_id: int, owner: str, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due jobs of one destination; return them with their event payloads.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets many workers claim side by side without waiting
    on each other. SQLite: ``BEGIN IMMEDIATE`` already serialises writers, so the lock clause is
    simply not emitted there.
    """
    now = utcnow()
    if engine.dialect.name == "sqlite":
        with write_transaction(engine, durable=False) as conn:
            return _sqlite.claim(conn, destination_id, owner, limit, lease_seconds, now)
    if engine.dialect.name == "postgresql" and POSTGRES_ARRAYS:
        from server.store.claims import claim_many  # (that module builds on this one)

        return claim_many(engine, {destination_id: limit}, owner, lease_seconds).get(destination_id, [])
    with write_transaction(engine, durable=False) as conn:
        ids = list(conn.execute(
            select(delivery_jobs.c.id)
            .where(
                delivery_jobs.c.destination_id == destination_id,
                delivery_jobs.c.status.in_(PENDING),
                delivery_jobs.c.next_attempt_at <= now,
                or_(delivery_jobs.c.lease_until.is_(None), delivery_jobs.c.lease_until < now),
            )
            .order_by(delivery_jobs.c.next_attempt_at, delivery_jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars())
        if not ids:
            return []
        return lease(conn, ids, owner, lease_seconds, now)


def lease(conn: Connection, ids: list[int], owner: str, lease_seconds: float, now: datetime) -> list[dict[str, Any]]:
    """Lease the picked jobs ``ids`` to ``owner``; return them with their event payloads, due
    first. (``server/store/claims.py`` ends in it for many destinations; on SQLite it runs as
    plain statements: ``delivery_sqlite.py``.)"""
    if conn.dialect.name == "sqlite":
        return _sqlite.lease(conn, ids, owner, lease_seconds, now)
    conn.execute(
        delivery_jobs.update().where(delivery_jobs.c.id.in_(ids))
        .values(lease_until=now + timedelta(seconds=lease_seconds), lease_owner=owner,
                # an expired lease still names its holder: this claim takes the job over
                takeovers=delivery_jobs.c.takeovers + case((delivery_jobs.c.lease_owner.is_(None), 0), else_=1))
    )
    return _dicts(conn.execute(
        select(delivery_jobs, events.c.payload)
        .join(events, events.c.id == delivery_jobs.c.event_id)
        .where(delivery_jobs.c.id.in_(ids))
        .order_by(delivery_jobs.c.next_attempt_at, delivery_jobs.c.id)
    ))


def ready_destinations(engine: Engine, exclude: Iterable[int] = (), now: datetime | None = None) -> list[int]:
    """Destinations that have at least one job due and not leased (at ``now``)."""
    now = now or utcnow()
    query = (
        select(delivery_jobs.c.destination_id)
        .where(
            delivery_jobs.c.status.in_(PENDING),
            delivery_jobs.c.next_attempt_at <= now,
            or_(delivery_jobs.c.lease_until.is_(None), delivery_jobs.c.lease_until < now),
        )
        .distinct()
    )
    exclude = list(exclude)
    if exclude:
        query = query.where(delivery_jobs.c.destination_id.not_in(exclude))
    with read_only(engine) as conn:
        return list(conn.execute(query).scalars())


def due_work(engine: Engine, exclude: Iterable[int] = ()) -> tuple[list[int], float | None]:
    """(destinations with a job due and not leased, seconds until the next job of the others
    becomes due — a retry's due time or a lease running out — or None when no job waits).

    The dispatcher sleeps that long (capped by its safety poll) instead of polling."""
    now = utcnow()  # one instant for both looks: a job due in between would fall through both
    ready = ready_destinations(engine, exclude, now)
    if ready:
        return ready, 0.0  # lanes start now; the next look (a poll interval on) computes the rest
    exclude = [*exclude, *ready]
    # A job is leased only once due (``claim``), so leased jobs lie among the due ones: saying so
    # keeps this look off the future jobs (a replay's 100k) in the due index.
    later = [
        select(func.min(delivery_jobs.c.lease_until)).where(
            delivery_jobs.c.status.in_(PENDING), delivery_jobs.c.next_attempt_at <= now,
            delivery_jobs.c.lease_until >= now),
    ]
    if exclude:
        later = [q.where(delivery_jobs.c.destination_id.not_in(exclude)) for q in later]
        later += _next_due_per_destination(now, exclude)
    else:
        later.append(select(func.min(delivery_jobs.c.next_attempt_at)).where(
            delivery_jobs.c.status.in_(PENDING), delivery_jobs.c.next_attempt_at > now,
            or_(delivery_jobs.c.lease_until.is_(None), delivery_jobs.c.lease_until < now)))
    with read_only(engine) as conn:
        times = [t for t in (conn.execute(q).scalar_one_or_none() for q in later) if t is not None]
    if not times:
        return ready, None
    return ready, max(0.0, (min(times) - now).total_seconds())


def _next_due_per_destination(now: datetime, exclude: list[int]) -> list[Any]:
    """The next due time among destinations whose lane is not running, one index seek each.

    A running lane (excluded) may own most of the future jobs — a history replay's 100k, due over
    minutes — and ``NOT IN`` over the due index read every one of them on each look (65 ms per
    30k on SQLite; bench/replay.py). Jobs of a removed destination are found when due by
    ``ready_destinations``, at the latest after the safety poll (they are skipped anyway)."""
    lease_free = or_(delivery_jobs.c.lease_until.is_(None), delivery_jobs.c.lease_until < now)
    queries = []
    for status in PENDING:
        first = (select(delivery_jobs.c.next_attempt_at)
                 .where(delivery_jobs.c.destination_id == destinations.c.id, delivery_jobs.c.status == status,
                        delivery_jobs.c.next_attempt_at > now, lease_free)
                 .order_by(delivery_jobs.c.next_attempt_at).limit(1).scalar_subquery())
        queries.append(select(func.min(first)).where(destinations.c.id.not_in(exclude)))
    return queries


def finish(engine: Engine, owner: str, results: list[dict[str, Any]]) -> None:
    """Record many outcomes in one transaction (group commit keeps SQLite's fsyncs few).

    Each result: job_id, destination_id, status, next_attempt_at, finished_at, latency_ms,
    last_status, last_error, attempts (list of attempt rows without job_id). A result is applied
    only while we still own the lease: if it ran out and another worker took the job, theirs wins.
    """
    if not results:
        return
    attempts = [
        {**a, "job_id": r["job_id"], "destination_id": r["destination_id"]}
        for r in results for a in r.get("attempts", ())
    ]
    with write_transaction(engine, durable=False) as conn:
        if conn.dialect.name == "sqlite" and _sqlite.finish(conn, owner, results, attempts):
            return  # else: SQLite before 3.33, or a NUL in a text (see delivery_sqlite)
        if conn.dialect.name == "postgresql" and POSTGRES_ARRAYS:
            _finish_postgres(conn, owner, results, attempts)
            return
        conn.execute(
            delivery_jobs.update()
            .where(delivery_jobs.c.id == bindparam("b_id"), delivery_jobs.c.lease_owner == owner)
            .values(
                status=bindparam("b_status"),
                attempts=delivery_jobs.c.attempts + bindparam("b_tries"),
                next_attempt_at=bindparam("b_next"),
                finished_at=bindparam("b_finished"),
                latency_ms=bindparam("b_latency"),
                last_status=bindparam("b_last_status"),
                last_error=bindparam("b_last_error"),
                lease_until=None,
                lease_owner=None,
            ),
            [
                {
                    "b_id": r["job_id"], "b_status": r["status"], "b_tries": r.get("tries", 1),
                    "b_next": r["next_attempt_at"], "b_finished": r.get("finished_at"),
                    "b_latency": r.get("latency_ms"), "b_last_status": r.get("last_status"),
                    "b_last_error": r.get("last_error"),
                }
                for r in results
            ],
        )
        if attempts:
            conn.execute(delivery_attempts.insert(), attempts)


# PostgreSQL: the batch's job updates and its attempts in ONE statement, the rows travelling as
# two JSON documents (orjson writes them in C; PostgreSQL's json_to_recordset reads them) instead
# of an executemany of one UPDATE per job and another of one INSERT per attempt, or of one array
# per column (psycopg dumps array elements one by one in Python: ~35 µs of the store thread's
# CPU per delivered event either way; bench/deliver_profile.py --postgres --split). A
# data-modifying WITH runs whether or not the rest reads it: the attempts are recorded even for
# a job whose lease another worker took, as on the other paths.
POSTGRES_ARRAYS = True  # (off: the SQLAlchemy statements above, as tests compare)
_POSTGRES_FINISH = text(
    "WITH updated AS (UPDATE delivery_jobs AS j SET status = r.status, attempts = j.attempts + coalesce(r.tries, 1),"
    " next_attempt_at = r.next_attempt_at, finished_at = r.finished_at, latency_ms = r.latency_ms,"
    " last_status = r.last_status, last_error = r.last_error, lease_until = NULL, lease_owner = NULL"
    " FROM json_to_recordset(CAST(:results AS JSON)) AS r(job_id BIGINT, status VARCHAR, tries INTEGER,"
    " next_attempt_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, latency_ms FLOAT8, last_status INTEGER,"
    " last_error TEXT) WHERE j.id = r.job_id AND j.lease_owner = :owner RETURNING j.id)"
    " INSERT INTO delivery_attempts (job_id, destination_id, at, outcome, request, status, response, error,"
    " latency_ms) SELECT a.job_id, a.destination_id, a.at, a.outcome, a.request, a.status, a.response, a.error,"
    " a.latency_ms FROM ROWS FROM (json_to_recordset(CAST(:attempts AS JSON)) AS (job_id BIGINT,"
    " destination_id BIGINT, at TIMESTAMPTZ, outcome VARCHAR, request TEXT, status INTEGER, response TEXT,"
    " error TEXT, latency_ms FLOAT8)) WITH ORDINALITY"
    " AS a(job_id, destination_id, at, outcome, request, status, response, error, latency_ms, n) ORDER BY a.n"
)


def _finish_postgres(conn: Connection, owner: str, results: list[dict[str, Any]],
                     attempts: list[dict[str, Any]]) -> None:
    conn.execute(_POSTGRES_FINISH, {
        "owner": owner,
        # each result's own "attempts" list travels in the second document, not in this one
        "results": orjson.dumps([{k: _text(v) for k, v in r.items() if k != "attempts"} for r in results]).decode(),
        "attempts": orjson.dumps([{k: _text(v) for k, v in a.items()} for a in attempts]).decode(),
    })


def _text(value: Any) -> Any:
    """PostgreSQL's text cannot hold a NUL character: a vendor's answer (or an error) with one is
    recorded with U+FFFD in its place. Refused, the whole batch of results failed, and the
    result writer retried it forever, recording nothing else."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def release(engine: Engine, owner: str, job_ids: list[int]) -> None:
    """Give back leases of jobs we claimed but will not send (graceful shutdown)."""
    if not job_ids:
        return
    with write_transaction(engine, durable=False) as conn:
        conn.execute(
            delivery_jobs.update()
            .where(delivery_jobs.c.id.in_(job_ids), delivery_jobs.c.lease_owner == owner)
            .values(lease_until=None, lease_owner=None)
        )
        notify.JOBS.publish(conn, 0)  # idle workers sleep: tell them these are claimable now


def prune(engine: Engine, before: datetime) -> int:
    """Forget delivered/skipped jobs finished before ``before``, and old attempts of any job that
    is not a dead letter now; return how many jobs went."""
    with write_transaction(engine) as conn:
        dead = select(delivery_jobs.c.id).where(delivery_jobs.c.status == DEAD)
        conn.execute(delivery_attempts.delete().where(delivery_attempts.c.at < before,
                                                      delivery_attempts.c.job_id.not_in(dead)))
        return conn.execute(delivery_jobs.delete().where(
            delivery_jobs.c.status.in_((DELIVERED, SKIPPED)), delivery_jobs.c.finished_at < before)).rowcount


# ---------------------------------------------------------------- dead letters and replay


def _dead_query(destination_id: int, since: datetime | None, until: datetime | None):
    query = select(delivery_jobs).where(
        delivery_jobs.c.destination_id == destination_id, delivery_jobs.c.status == DEAD
    )
    if since is not None:
        query = query.where(delivery_jobs.c.received_at >= since)
    if until is not None:
        query = query.where(delivery_jobs.c.received_at < until)
    return query


def list_dead(
    engine: Engine, destination_id: int, *, since: datetime | None = None, until: datetime | None = None,
    limit: int = 100, before: int | None = None,
) -> list[dict[str, Any]]:
    """Dead letters of a destination, newest first (filter by the event's receipt time)."""
    query = _dead_query(destination_id, since, until)
    if before is not None:
        query = query.where(delivery_jobs.c.id < before)
    with read_only(engine) as conn:
        return _dicts(conn.execute(query.order_by(delivery_jobs.c.id.desc()).limit(limit)))


def count_dead(engine: Engine, destination_id: int, *, since=None, until=None) -> int:
    query = _dead_query(destination_id, since, until).with_only_columns(func.count())
    with read_only(engine) as conn:
        return conn.execute(query).scalar_one()


def get_job(engine: Engine, job_id: int) -> dict[str, Any] | None:
    """One job with its event payload and every attempt, oldest first."""
    with read_only(engine) as conn:
        row = conn.execute(
            select(delivery_jobs, events.c.payload)
            .join(events, events.c.id == delivery_jobs.c.event_id, isouter=True)
            .where(delivery_jobs.c.id == job_id)
        ).one_or_none()
        if row is None:
            return None
        job = dict(row._mapping)
        job["attempts_log"] = _dicts(conn.execute(
            select(delivery_attempts).where(delivery_attempts.c.job_id == job_id).order_by(delivery_attempts.c.id)
        ))
    return job


# replay_id of a dead letter queued again: it is a replay (its latency counts from the requeue,
# not from the event's receipt) without a row in the replays table.
DEAD_LETTER_REPLAY = 0


def replay(
    engine: Engine, destination_id: int, *, since: datetime | None = None, until: datetime | None = None,
    job_ids: list[int] | None = None,
) -> int:
    """Queue dead letters again (a fresh retry window); return how many.

    The worker translates them anew with the destination's current settings, so fixing a
    setting and then replaying is the recovery path for a permanent error.
    """
    now = utcnow()
    condition = [delivery_jobs.c.destination_id == destination_id, delivery_jobs.c.status == DEAD]
    if since is not None:
        condition.append(delivery_jobs.c.received_at >= since)
    if until is not None:
        condition.append(delivery_jobs.c.received_at < until)
    if job_ids is not None:
        condition.append(delivery_jobs.c.id.in_(job_ids))
    with write_transaction(engine) as conn:
        count = conn.execute(
            delivery_jobs.update().where(and_(*condition)).values(
                status=QUEUED, created_at=now, next_attempt_at=now, finished_at=None,
                lease_until=None, lease_owner=None, replay_id=DEAD_LETTER_REPLAY,
            )
        ).rowcount
        if count:
            notify.JOBS.publish(conn, destination_id)
        return count


def recent_failures(engine: Engine, destination_id: int, limit: int) -> list[dict[str, Any]]:
    """The destination's latest attempts that did not deliver, newest first."""
    with read_only(engine) as conn:
        return _dicts(conn.execute(
            select(delivery_attempts).where(delivery_attempts.c.destination_id == destination_id,
                                            delivery_attempts.c.outcome != "delivered")
            .order_by(delivery_attempts.c.id.desc()).limit(limit)
        ))


def jobs_of_event(engine: Engine, event_id: int) -> list[dict[str, Any]]:
    """One event's delivery jobs: destination id, status, attempts, last status and error."""
    jobs = delivery_jobs
    with read_only(engine) as conn:
        return _dicts(conn.execute(
            select(jobs.c.destination_id, jobs.c.status, jobs.c.attempts, jobs.c.last_status, jobs.c.last_error)
            .where(jobs.c.event_id == event_id)
        ))

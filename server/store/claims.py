"""Claiming due delivery jobs for many destinations in one transaction.

Why not one claim per destination: a worker runs a lane per destination with due jobs, and each
lane claimed for itself — three statements and a write transaction per lane, each few dozen
sends. With a hundred destinations on one source every lane's share of the sends is a tenth of
what it is with ten, so claims (and the lock-free looks between them) came ten times as often
per delivered job. Here the delivery worker gathers what its lanes want and claims it in one
transaction whatever their number: the same three statements (find, lease, read) for one
destination or a hundred.

Leases, ``takeovers`` and ``SKIP LOCKED`` work as in ``delivery.claim``: each destination's due
jobs are taken oldest first, at most as many as its lane asked for.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import Engine, or_, select, text

from server.store.delivery import PENDING, delivery_jobs, lease, utcnow, write_transaction
from server.store.engine import read_only
from server.store.schema import UTCDateTime

# SQLite allows 500 terms in one compound SELECT; destinations beyond a chunk get another statement.
SQLITE_CHUNK = 200

# PostgreSQL: the whole claim is ONE statement — pick each destination's due jobs, lease them,
# return them with their payloads — with no SQLAlchemy expanding IN lists of the picked ids and
# no per-row result processing (that general path, ``delivery.lease``, cost ~35 µs of the
# store thread's CPU per delivered event on PostgreSQL: bench/deliver_profile.py --split).
_POSTGRES_DUE_OF = (  # one status's due, unleased jobs of destination w.d, oldest first
    "SELECT * FROM (SELECT id, next_attempt_at FROM delivery_jobs WHERE destination_id = w.d"
    " AND status = '{status}' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until < :now)"
    " ORDER BY next_attempt_at, id LIMIT w.n FOR UPDATE SKIP LOCKED) AS {status}"
)
_POSTGRES_CLAIM_MANY = text(
    # Per status, so that each read is an ordered range of ix_delivery_jobs_claim (destination,
    # status, next_attempt_at) that stops after w.n rows: with "status IN (queued, retrying)"
    # PostgreSQL read and sorted every pending job of the destination on each claim (a backlog of
    # 20,000 took 14 ms a claim). Retries are few, so the rows locked and not picked are few.
    "WITH picked AS (SELECT p.id FROM unnest(CAST(:destinations AS BIGINT[]), CAST(:limits AS INT[])) AS w(d, n)"
    " CROSS JOIN LATERAL (SELECT u.id FROM (" + _POSTGRES_DUE_OF.format(status="queued") + " UNION ALL "
    + _POSTGRES_DUE_OF.format(status="retrying") + ") AS u ORDER BY u.next_attempt_at, u.id LIMIT w.n) AS p),"
    # ANY(ARRAY(...)): primary-key lookups whatever the planner guesses of picked's size (it
    # guessed 2,000 rows and hashed the whole table)
    " leased AS (UPDATE delivery_jobs AS j SET lease_until = :until, lease_owner = :owner,"
    # an expired lease still names its holder: this claim takes the job over
    " takeovers = j.takeovers + CASE WHEN j.lease_owner IS NULL THEN 0 ELSE 1 END"
    " WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) RETURNING j.*)"
    # a job whose event is gone is leased but not returned, as the general path's join does
    " SELECT leased.*, e.payload FROM leased JOIN events AS e ON e.id = leased.event_id"
)


# One destination's share, in the form SQLite accepts as a term of a compound SELECT.
_SQLITE_DUE = (
    "SELECT id FROM (SELECT id FROM delivery_jobs WHERE destination_id = ?"
    " AND status IN ('queued', 'retrying') AND next_attempt_at <= ?"
    " AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at, id LIMIT ?)"
)


_JOB_TIMES = [c.name for c in delivery_jobs.c if isinstance(c.type, UTCDateTime)]


def _jobs_as_read(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Claimed job rows read by plain SQL on PostgreSQL (every ``delivery_jobs`` column and the
    payload) as SQLAlchemy's table would read them (times in UTC), due first."""
    jobs = []
    for row in rows:
        job = dict(row)
        for name in _JOB_TIMES:
            if job[name] is not None:
                job[name] = job[name].astimezone(timezone.utc)
        jobs.append(job)
    jobs.sort(key=lambda job: (job["next_attempt_at"], job["id"]))
    return jobs


def claim_many(engine: Engine, wants: dict[int, int], owner: str, lease_seconds: float) -> dict[int, list[dict[str, Any]]]:
    """Lease up to ``wants[d]`` due jobs of each destination ``d``; return each destination's
    jobs (with their event payloads) oldest first. Destinations with nothing due are left out."""
    wants = {d: n for d, n in wants.items() if n > 0}
    if not wants:
        return {}
    now = utcnow()
    with write_transaction(engine, durable=False) as conn:
        if conn.dialect.name == "postgresql":
            jobs = _jobs_as_read(conn.execute(_POSTGRES_CLAIM_MANY, {
                "destinations": list(wants), "limits": list(wants.values()), "now": now,
                "until": now + timedelta(seconds=lease_seconds), "owner": owner,
            }).mappings())
        else:
            # Plain SQL: SQLAlchemy compiled the compound anew for every number of destinations.
            ids = []
            items = list(wants.items())
            stamp = now.isoformat(sep=" ", timespec="microseconds")[:26]
            for start in range(0, len(items), SQLITE_CHUNK):
                chunk = items[start:start + SQLITE_CHUNK]
                sql = " UNION ALL ".join([_SQLITE_DUE] * len(chunk))
                params = tuple(v for d, n in chunk for v in (d, stamp, stamp, n))
                ids += [row[0] for row in conn.exec_driver_sql(sql, params)]
            if not ids:
                return {}
            jobs = lease(conn, ids, owner, lease_seconds, now)
    claimed: dict[int, list[dict[str, Any]]] = {}
    for job in jobs:
        claimed.setdefault(job["destination_id"], []).append(job)
    return claimed


def due_among(engine: Engine, destination_ids: Iterable[int]) -> list[int]:
    """Which of these destinations have a job due and not leased: one lock-free read for all the
    lanes that found nothing at their last claim (an idle lane's look never takes SQLite's
    write lock, and a hundred lanes cost one statement, not a hundred)."""
    ids = list(destination_ids)
    if not ids:
        return []
    now = utcnow()
    with read_only(engine) as conn:
        return list(conn.execute(
            select(delivery_jobs.c.destination_id).where(
                delivery_jobs.c.destination_id.in_(ids),
                delivery_jobs.c.status.in_(PENDING),
                delivery_jobs.c.next_attempt_at <= now,
                or_(delivery_jobs.c.lease_until.is_(None), delivery_jobs.c.lease_until < now),
            ).distinct()
        ).scalars())

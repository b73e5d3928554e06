"""Delivery stats queries over ``delivery_jobs`` and ``delivery_attempts`` (see delivery.py):
counts by status, latency percentiles, the last error, and timestamps for the hourly series.

Synchronous, engine first, like every store module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import Engine, func, select

from server.store.delivery import DEAD, DELIVERED, RETRYING, STATUSES, delivery_attempts, delivery_jobs
from server.store.engine import read_only


def status_counts(engine: Engine, destination_id: int | None = None) -> dict[int, dict[str, int]]:
    """destination_id → {status: count} (every status present, zero if none)."""
    query = select(delivery_jobs.c.destination_id, delivery_jobs.c.status, func.count()).group_by(
        delivery_jobs.c.destination_id, delivery_jobs.c.status
    )
    if destination_id is not None:
        query = query.where(delivery_jobs.c.destination_id == destination_id)
    result: dict[int, dict[str, int]] = {}
    with read_only(engine) as conn:
        for dest, status, count in conn.execute(query):
            result.setdefault(dest, dict.fromkeys(STATUSES, 0))[status] = count
    return result


def redelivered_counts(engine: Engine, destination_id: int | None = None) -> dict[int, int]:
    """destination_id → jobs delivered after being taken over from another worker (a dead one, or
    one whose lease ran out): each may have reached the vendor twice. Only destinations that
    have any are listed."""
    query = (select(delivery_jobs.c.destination_id, func.count())
             .where(delivery_jobs.c.takeovers > 0, delivery_jobs.c.status == DELIVERED)
             .group_by(delivery_jobs.c.destination_id))
    if destination_id is not None:
        query = query.where(delivery_jobs.c.destination_id == destination_id)
    with read_only(engine) as conn:
        return dict(conn.execute(query).all())


def latency_percentiles(
    engine: Engine, destination_id: int, since: datetime, quantiles: Iterable[float] = (0.5, 0.99)
) -> dict[float, float | None]:
    """Receipt→delivery latency quantiles (ms) of jobs delivered since ``since``.

    Nearest-rank, computed in the database with one count and one OFFSET per quantile, so the
    latencies never travel to Python.
    """
    base = select(delivery_jobs.c.latency_ms).where(
        delivery_jobs.c.destination_id == destination_id,
        delivery_jobs.c.status == DELIVERED,
        delivery_jobs.c.finished_at >= since,
    )
    out: dict[float, float | None] = {}
    with read_only(engine) as conn:
        total = conn.execute(base.with_only_columns(func.count())).scalar_one()
        for q in quantiles:
            if not total:
                out[q] = None
                continue
            rank = max(0, min(total - 1, int(q * total + 0.999999) - 1))
            out[q] = conn.execute(base.order_by(delivery_jobs.c.latency_ms).offset(rank).limit(1)).scalar_one()
    return out


def last_error(engine: Engine, destination_id: int) -> dict[str, Any] | None:
    """The most recent failed attempt (retry or dead)."""
    with read_only(engine) as conn:
        row = conn.execute(
            select(delivery_attempts.c.at, delivery_attempts.c.status, delivery_attempts.c.error,
                   delivery_attempts.c.response, delivery_attempts.c.job_id, delivery_attempts.c.outcome)
            .where(delivery_attempts.c.destination_id == destination_id, delivery_attempts.c.outcome != DELIVERED)
            .order_by(delivery_attempts.c.id.desc()).limit(1)
        ).one_or_none()
    return None if row is None else dict(row._mapping)


def hourly_events(engine: Engine, destination_id: int, since: datetime) -> dict[str, list[datetime]]:
    """Timestamps since ``since``: deliveries (jobs), and dead-letterings and retries (attempts) —
    so a dead letter that was later replayed and delivered still shows in its hour."""
    with read_only(engine) as conn:
        delivered = conn.execute(
            select(delivery_jobs.c.finished_at).where(
                delivery_jobs.c.destination_id == destination_id,
                delivery_jobs.c.finished_at >= since,
                delivery_jobs.c.status == DELIVERED,
            )
        ).scalars().all()
        failures = conn.execute(
            select(delivery_attempts.c.outcome, delivery_attempts.c.at).where(
                delivery_attempts.c.destination_id == destination_id,
                delivery_attempts.c.at >= since,
                delivery_attempts.c.outcome.in_(("retry", DEAD)),
            )
        ).all()
    return {
        DELIVERED: list(delivered),
        DEAD: [t for o, t in failures if o == DEAD],
        RETRYING: [t for o, t in failures if o == "retry"],
    }


def hourly_latency(engine: Engine, destination_id: int, since: datetime) -> dict[datetime, list[float]]:
    """Delivered jobs' latencies (ms) since ``since``, by the hour they finished in (for the
    destination page's latency-over-time chart). A replayed job's latency counts from its replay."""
    result: dict[datetime, list[float]] = {}
    with read_only(engine) as conn:
        rows = conn.execute(select(delivery_jobs.c.finished_at, delivery_jobs.c.latency_ms).where(
            delivery_jobs.c.destination_id == destination_id, delivery_jobs.c.finished_at >= since,
            delivery_jobs.c.status == DELIVERED, delivery_jobs.c.latency_ms.is_not(None)))
        for finished_at, latency in rows:
            result.setdefault(finished_at.replace(minute=0, second=0, microsecond=0), []).append(latency)
    return result

"""Per-destination delivery stats: counts by status, latency percentiles, last error, 24 h series.

Computed from the jobs and attempts tables, so every process (serve, workers) reports the same
numbers. Latency is from the event's receipt by the collector to the vendor's 2xx.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from server.store import delivery as store
from server.store import delivery_stats as queries

LATENCY_WINDOW = timedelta(hours=24)
SERIES_HOURS = 24


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def hourly_series(engine: Engine, destination_id: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """24 hourly buckets, oldest first, each {hour, delivered, retrying, dead}.

    ``retrying`` counts failed attempts that were scheduled for another try in that hour.
    """
    now = now or store.utcnow()
    first = _hour(now) - timedelta(hours=SERIES_HOURS - 1)
    buckets = {first + timedelta(hours=i): {"delivered": 0, "retrying": 0, "dead": 0} for i in range(SERIES_HOURS)}
    for status, stamps in queries.hourly_events(engine, destination_id, first).items():
        for stamp in stamps:
            bucket = buckets.get(_hour(stamp))
            if bucket is not None:
                bucket[status] += 1
    return [{"hour": hour.isoformat(), **counts} for hour, counts in buckets.items()]


def destination_stats(engine: Engine, destination: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or store.utcnow()
    counts = queries.status_counts(engine, destination["id"]).get(destination["id"], dict.fromkeys(store.STATUSES, 0))
    percentiles = queries.latency_percentiles(engine, destination["id"], now - LATENCY_WINDOW)
    error = queries.last_error(engine, destination["id"])
    return {
        "destination_id": destination["id"],
        "slug": destination["slug"],
        "delivered": counts[store.DELIVERED],
        "retrying": counts[store.RETRYING],
        "queued": counts[store.QUEUED],
        "dead": counts[store.DEAD],
        "skipped": counts[store.SKIPPED],
        # delivered after another worker held the job and died (or its lease ran out): the
        # only deliveries that may have reached the vendor twice (docs/delivery.md)
        "redelivered_after_takeover": queries.redelivered_counts(engine, destination["id"]).get(destination["id"], 0),
        "latency_ms": {"p50": percentiles[0.5], "p99": percentiles[0.99], "window_hours": 24},
        "last_error": None if error is None else {
            "at": error["at"].isoformat() if error["at"] else None,
            "status": error["status"],
            "message": error["error"],
            "response": error["response"],
            "job_id": error["job_id"],
            "outcome": error["outcome"],
        },
        "series": {"bucket": "hour", "points": hourly_series(engine, destination["id"], now)},
    }

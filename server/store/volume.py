"""Event volume per source from the event log (``events``): hourly counts by call type over a
window, for the source page's chart, and per-source totals, for the sources overview.

Bucketing is done here in Python over (received_at, type) pairs rather than in SQL, because
hour truncation is spelled differently in SQLite and PostgreSQL; only those two narrow columns are
read. Synchronous, engine first, like every store module.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from server.store.engine import read_only
from server.store.events import events

TYPES = ("track", "page", "identify", "screen", "group", "alias")


def hour_of(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def hourly_by_type(engine: Engine, source_id: int, now: datetime, hours: int) -> list[dict[str, Any]]:
    """``hours`` buckets ending with the current hour, oldest first: {hour (ISO), total, <type>: n}."""
    first = hour_of(now) - timedelta(hours=hours - 1)
    buckets = {first + timedelta(hours=i): dict.fromkeys(TYPES, 0) for i in range(hours)}
    query = select(events.c.received_at, events.c.type).where(
        events.c.source_id == source_id, events.c.received_at >= first)
    with read_only(engine) as conn:
        for received_at, call in conn.execute(query):
            bucket = buckets.get(hour_of(received_at))
            if bucket is not None and call in bucket:
                bucket[call] += 1
    return [{"hour": hour.isoformat(), "total": sum(counts.values()), **counts} for hour, counts in buckets.items()]


def totals_since(engine: Engine, since: datetime) -> dict[int, int]:
    """source_id → events received since ``since`` (sources without any are left out)."""
    query = (select(events.c.source_id, func.count()).where(events.c.received_at >= since)
             .group_by(events.c.source_id))
    with read_only(engine) as conn:
        return dict(conn.execute(query).all())


def last_received(engine: Engine) -> dict[int, datetime]:
    """source_id → when its newest stored event arrived."""
    query = select(events.c.source_id, func.max(events.c.received_at)).group_by(events.c.source_id)
    with read_only(engine) as conn:
        return dict(conn.execute(query).all())

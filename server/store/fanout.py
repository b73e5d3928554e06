"""Fan-out: turn new log entries into delivery jobs, moving a persisted cursor.

One pass reads the events after the cursor, routes each one, inserts its jobs and advances the
cursor — all in ONE transaction. A crash before commit leaves both untouched (the pass runs
again); after commit both are there. So every event is fanned out exactly once, and a job
exists for every delivery we owe. The cursor row is locked (``FOR UPDATE``; on SQLite the
write transaction is already exclusive), so several processes may run passes safely.

PostgreSQL hands out ids from a sequence before commit, so id 41 can become visible after id 42
has. Moving the cursor past a gap could lose 41 for ever; instead a pass stops at a gap until
it is *settled*: every transaction that was running when the gap was first seen has ended
(``pg_snapshot_xmin`` passed the ``xmax`` recorded then). A gap still missing after that was
a rolled-back insert, and the cursor moves on.

The routing decision is delivery's (``server/delivery/router.py``): a pass takes it as ``route``,
so the store imports no plane.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Callable, Sequence

import orjson
from sqlalchemy import Connection, Engine, func, select, text

from server.destinations import has_cloud_translator
from server.store import notify
from server.store.engine import read_only
from server.store.delivery import (
    FANOUT_CURSOR, delivery_cursors, queue_jobs, utcnow, write_transaction,
)
from server.store.events import events
from server.store.schema import destinations, sources

# route(event, event_type, destinations) -> ids of the destinations (all of one enabled source,
# each a dict with id, slug, mode, enabled, settings) that get the event.
Route = Callable[[dict[str, Any], str, list[dict[str, Any]]], list[int]]

# A gap is first only remembered; its xmax is taken on a later pass, so the inserting
# transaction has surely written (and so owns an xid) by then.
GAP_SETTLE_DELAY_S = 0.02
SKIP_MARGIN = timedelta(seconds=2)


class GapTracker:
    """Gaps in the id sequence seen on PostgreSQL: missing id → (first seen, xmax or None)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, int | None]] = {}
        self.blocked = False  # the last pass stopped at an unsettled gap: look again soon

    def usable(self, conn: Connection, cursor: int, rows: Sequence, xmin: int, xmax: int) -> Sequence:
        expected = cursor + 1
        self.blocked = False
        for index, row in enumerate(rows):
            if row.id != expected:
                if not self._settled(expected, xmin, xmax):
                    self.blocked = True
                    return rows[:index]
            expected = row.id + 1
        self.seen = {k: v for k, v in self.seen.items() if k > cursor}
        return rows

    def _settled(self, missing: int, xmin: int, xmax: int) -> bool:
        first, recorded = self.seen.get(missing, (time.monotonic(), None))
        if recorded is None:
            if time.monotonic() - first >= GAP_SETTLE_DELAY_S:
                recorded = xmax
            self.seen[missing] = (first, recorded)
            return False
        return xmin >= recorded


def ensure_cursor(engine: Engine) -> None:
    with engine.begin() as conn:
        exists = conn.execute(
            select(delivery_cursors.c.event_id).where(delivery_cursors.c.name == FANOUT_CURSOR)
        ).one_or_none()
        if exists is None:
            if conn.dialect.name == "postgresql":
                conn.execute(text(
                    "INSERT INTO delivery_cursors (name, event_id) VALUES (:n, 0) ON CONFLICT (name) DO NOTHING"
                ), {"n": FANOUT_CURSOR})
            else:
                conn.execute(delivery_cursors.insert().values(name=FANOUT_CURSOR, event_id=0))


def fanout_pass(engine: Engine, route: Route, gaps: GapTracker, limit: int = 1000,
                touched: set[int] | None = None) -> tuple[int, int, bool]:
    """One pass; returns (events consumed, jobs created, whether more events may be waiting).
    The ids of the destinations that got jobs are added to ``touched`` when given."""
    gaps.blocked = False
    if not _anything_new(engine):
        return 0, 0, False
    with write_transaction(engine, durable=False) as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            # Taken before reading the events: every transaction below xmin has ended, so its
            # rows (if committed) are visible to the read that follows.
            xmin, xmax = conn.execute(text(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
                "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
            )).one()
        cursor = conn.execute(
            select(delivery_cursors.c.event_id).where(delivery_cursors.c.name == FANOUT_CURSOR).with_for_update()
        ).scalar_one()
        rows = conn.execute(
            select(events.c.id, events.c.source_id, events.c.type, events.c.payload)
            .where(events.c.id > cursor).order_by(events.c.id).limit(limit)
        ).all()
        full = len(rows) == limit
        if postgres:
            rows = gaps.usable(conn, cursor, rows, xmin, xmax)
        if not rows:
            return 0, 0, False
        jobs = _jobs_for(conn, rows, route)
        if jobs:
            queue_jobs(conn, jobs, utcnow())
            notify.JOBS.publish(conn, 0)  # the other processes' workers sleep until told
            if touched is not None:
                touched.update(destination_id for destination_id, _ in jobs)
        conn.execute(
            delivery_cursors.update().where(delivery_cursors.c.name == FANOUT_CURSOR).values(event_id=rows[-1].id)
        )
    return len(rows), len(jobs), full


def _anything_new(engine: Engine) -> bool:
    """A lock-free look first: an idle poll must not take SQLite's write lock."""
    with read_only(engine) as conn:
        cursor = conn.execute(
            select(delivery_cursors.c.event_id).where(delivery_cursors.c.name == FANOUT_CURSOR)
        ).scalar_one_or_none()
        return conn.execute(select(events.c.id).where(events.c.id > (cursor or 0)).limit(1)).first() is not None


def _jobs_for(conn: Connection, rows: Sequence, route: Route) -> list[tuple[int, int]]:
    """(destination_id, event_id) of every job the events in ``rows`` need, in event order."""
    source_ids = {r.source_id for r in rows}
    enabled = dict(conn.execute(select(sources.c.id, sources.c.enabled).where(sources.c.id.in_(source_ids))).all())
    by_source: dict[int, list[dict[str, Any]]] = {}
    for d in conn.execute(
        select(destinations.c.id, destinations.c.source_id, destinations.c.slug, destinations.c.mode,
               destinations.c.enabled, destinations.c.settings, destinations.c.filters).where(destinations.c.source_id.in_(source_ids))
    ):
        # Settings too: routing reads consent_categories from them; and the filters (docs/filters.md).
        by_source.setdefault(d.source_id, []).append(
            {"id": d.id, "slug": d.slug, "mode": d.mode, "enabled": bool(d.enabled), "settings": d.settings,
             "filters": d.filters}
        )
    jobs = []
    for r in rows:
        candidates = by_source.get(r.source_id)
        if not candidates or not enabled.get(r.source_id):
            continue  # no destinations, or a disabled (or deleted) source: nothing to parse
        for destination_id in route(orjson.loads(r.payload), r.type, candidates):
            jobs.append((destination_id, r.id))
    return jobs


# ---------------------------------------------------------------- nothing to route


def routable_in(conn: Connection) -> list[dict[str, Any]]:
    """Enabled cloud-mode destinations of enabled sources with a cloud translator (id, source_id,
    slug, updated_at): the only ones a pass can give jobs. None at all lets the delivery service
    skip passes, and retention stop waiting for the fan-out cursor (server/store/erasure.py)."""
    rows = conn.execute(
        select(destinations.c.id, destinations.c.source_id, destinations.c.slug, destinations.c.updated_at)
        .join(sources, sources.c.id == destinations.c.source_id)
        .where(destinations.c.mode == "cloud", destinations.c.enabled.is_(True), sources.c.enabled.is_(True))
    )
    return [dict(r._mapping) for r in rows if has_cloud_translator(r.slug)]


def routable_destinations(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine) as conn:
        return routable_in(conn)


def skip_unrouted(engine: Engine, since: Any) -> int:
    """Move the cursor over the events appended while no destination could get them, without
    reading their payloads: to the last event, but not past the first one received at or after
    ``since`` (when the first routable destination appeared) less ``SKIP_MARGIN``, so an event
    received after that is never skipped — the margin covers an append still committing (its id
    may be lower than a visible one's) and clocks of two machines a little apart; the events in
    it are routed as usual. Returns the cursor."""
    with write_transaction(engine) as conn:
        cursor = conn.execute(
            select(delivery_cursors.c.event_id).where(delivery_cursors.c.name == FANOUT_CURSOR).with_for_update()
        ).scalar_one()
        last = conn.execute(select(func.max(events.c.id))).scalar_one_or_none() or 0
        first_kept = conn.execute(
            select(func.min(events.c.id)).where(events.c.id > cursor, events.c.received_at >= since - SKIP_MARGIN)
        ).scalar_one_or_none()
        target = last if first_kept is None else first_kept - 1
        if target > cursor:
            conn.execute(delivery_cursors.update().where(delivery_cursors.c.name == FANOUT_CURSOR).values(event_id=target))
            return target
        return cursor

"""Fan-out: an event committed late on PostgreSQL is never skipped; a rolled-back id does not
stall the cursor; the cursor and the jobs move together."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from delivery_flow import append, jobs, source_with
from delivery_vendor import make_event
from server.delivery.router import route
from server.store import fanout
from server.store import delivery as store
from server.store import events, open_store


def cursor(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(store.delivery_cursors.c.event_id)).scalar_one()


def insert_uncommitted(engine, source_id):
    """Start a transaction that holds an event id without committing it."""
    conn = engine.connect()
    transaction = conn.begin()
    row = events.rows_for(source_id, datetime.now(timezone.utc), [make_event("track", event="late")])
    conn.execute(events.events.insert(), row)
    return conn, transaction


@pytest.mark.postgres
def test_an_event_committed_after_a_later_one_is_still_delivered(pg, catalog):
    engine = open_store(pg.create_database())
    source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/x"}})
    fanout.ensure_cursor(engine)
    gaps = fanout.GapTracker()
    conn, transaction = insert_uncommitted(engine, source["id"])  # takes id N, not yet visible
    append(engine, source["id"], [make_event("track", event="early")])  # id N+1, committed
    for _ in range(5):
        assert fanout.fanout_pass(engine, _router(catalog), gaps)[0] == 0  # stops before the gap
        time.sleep(fanout.GAP_SETTLE_DELAY_S)
    assert jobs(engine) == []
    transaction.commit()
    conn.close()
    consumed, created, _ = fanout.fanout_pass(engine, _router(catalog), gaps)
    assert (consumed, created) == (2, 2)
    assert sorted(j["event_id"] for j in jobs(engine, dest["id"])) == [cursor(engine) - 1, cursor(engine)]
    engine.dispose()


@pytest.mark.postgres
def test_a_rolled_back_id_does_not_stall_the_cursor(pg, catalog):
    engine = open_store(pg.create_database())
    source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/x"}})
    fanout.ensure_cursor(engine)
    gaps = fanout.GapTracker()
    conn, transaction = insert_uncommitted(engine, source["id"])
    append(engine, source["id"], [make_event("track", event="kept")])
    assert fanout.fanout_pass(engine, _router(catalog), gaps)[0] == 0
    transaction.rollback()
    conn.close()
    deadline = time.monotonic() + 10
    consumed = 0
    while consumed == 0 and time.monotonic() < deadline:
        time.sleep(fanout.GAP_SETTLE_DELAY_S)
        consumed = fanout.fanout_pass(engine, _router(catalog), gaps)[0]
    assert consumed == 1 and len(jobs(engine, dest["id"])) == 1
    engine.dispose()


def test_cursor_and_jobs_move_together_and_an_event_is_fanned_out_once(engine, catalog):
    source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/x"}})
    fanout.ensure_cursor(engine)
    fanout.ensure_cursor(engine)  # idempotent
    append(engine, source["id"], [make_event("track", event=f"E{i}") for i in range(3)])
    gaps = fanout.GapTracker()
    assert fanout.fanout_pass(engine, _router(catalog), gaps, limit=2)[:2] == (2, 2)
    assert fanout.fanout_pass(engine, _router(catalog), gaps, limit=2)[:2] == (1, 1)
    assert fanout.fanout_pass(engine, _router(catalog), gaps) == (0, 0, False)
    assert [j["status"] for j in jobs(engine, dest["id"])] == [store.QUEUED] * 3
    assert cursor(engine) == max(j["event_id"] for j in jobs(engine))


def _router(catalog):
    return lambda event, event_type, destinations: route(event, event_type, True, destinations, catalog)

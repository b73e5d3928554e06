"""Latency after a replay of dead letters counts from the replay, not from the event's receipt
(the tour saw 12 s for a delivery that took milliseconds after "Replay dead letters")."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from delivery_flow import RunningService, all_finished, append, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.store import delivery as store
from server.store.delivery import delivery_jobs
from server.store.delivery import write_transaction


def test_replayed_dead_letters_measure_latency_from_the_replay(engine, catalog):
    state = {"ok": False}

    def vendor_reply(record):
        return (200, {}, b"ok") if state["ok"] else (404, {}, b"gone")

    with Vendor(vendor_reply) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/hook"}})
        append(engine, source["id"], [make_event("track", event=f"E{i}", userId="u") for i in range(3)])
        with RunningService(engine, catalog):
            wait_until(lambda: all_finished(engine, dest["id"], 3, store.DEAD), what="dead letters")
            # The events were received an hour ago (the dead letters waited that long for a fix).
            with write_transaction(engine) as conn:
                jobs = conn.execute(delivery_jobs.select().where(delivery_jobs.c.destination_id == dest["id"])).all()
                for job in jobs:
                    conn.execute(update(delivery_jobs).where(delivery_jobs.c.id == job.id).values(
                        received_at=job.received_at - timedelta(hours=1)))
            state["ok"] = True
            assert store.replay(engine, dest["id"]) == 3
            wait_until(lambda: all_finished(engine, dest["id"], 3, store.DELIVERED), what="replayed deliveries")
    with engine.connect() as conn:
        rows = conn.execute(delivery_jobs.select().where(delivery_jobs.c.destination_id == dest["id"])).all()
    assert [r.replay_id for r in rows] == [store.DEAD_LETTER_REPLAY] * 3
    # Measured from the requeue: far below the hour since receipt (which the old code reported).
    assert all(r.latency_ms < 600_000 for r in rows), [r.latency_ms for r in rows]
    assert all((r.finished_at - r.created_at).total_seconds() * 1000 >= r.latency_ms - 1 for r in rows)

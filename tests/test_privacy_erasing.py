"""A delete regulation and the delivery workers (server/store/erasing.py): the jobs a lane had
already claimed when a user's deletion was asked for are neither sent nor recorded afterwards,
while other users' events, and the user's events that came after the request, still flow. On
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from delivery_flow import RunningService, append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.config import Config
from server.privacy import runner
from server.store import erasure, regulations
from server.store.engine import read_only
from server.store.events import events
from server.store.erasing import RECENT_S, ErasingList, read_erasing

pytestmark = pytest.mark.timeout(120)


def track(user: str, n: int) -> dict:
    return make_event("track", event="Order Completed", userId=user, messageId=f"{user}-{n}", properties={"n": n})


def sent_ids(vendor: Vendor) -> list[str]:
    return [r.json()["messageId"] for r in vendor.snapshot()]


def test_jobs_a_lane_held_when_a_user_was_erased_are_neither_sent_nor_recorded(engine, catalog):
    gate = threading.Event()

    def held(record):
        gate.wait(30)  # the first send stays in flight until the deletion has finished
        return 200, {"Content-Type": "application/json"}, b"{}"

    with Vendor(held) as vendor:
        source, (destination,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        append(engine, source["id"], [track("ada", i) for i in range(6)] + [track("bob", i) for i in range(2)])
        try:
            # One send at a time: the lane holds four jobs (ada-0 in flight, ada-1..3 waiting).
            with RunningService(engine, catalog, concurrency=1, timeout=60) as service:
                vendor.wait_for(1)
                assert sent_ids(vendor) == ["ada-0"]
                regulation = regulations.create(engine, type="delete", user_ids=["ada"], source_ids=None, actor="test")
                assert service.erasing.bounds  # this process knew of it at once
                assert runner.run_pending(engine, catalog, Config(), [], "test-runner") == 1
                done = regulations.get(engine, regulation["id"])
                assert done["status"] == "finished"
                assert done["counts"]["events"] == 6 and done["counts"]["delivery_jobs"] == 6
                # Not finished before every process's copy of the list can have caught up.
                took = datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["created_at"])
                assert took.total_seconds() >= runner.PROPAGATE_S
                gate.set()
                # ada's later events (after the request) are sent: a delete does not stop them.
                append(engine, source["id"], [track("ada", 6)])
                vendor.wait_for(4)
                wait_until(lambda: all(j["status"] == "delivered" for j in jobs(engine)) and
                           len(jobs(engine)) == 3, what="bob's and ada's new events delivered")
        finally:
            gate.set()
        # Only the send that was in flight before the request reached the vendor of ada's erased
        # events; its outcome, arriving after the deletion, was not recorded.
        assert sorted(sent_ids(vendor)) == ["ada-0", "ada-6", "bob-0", "bob-1"]
        assert erasure.drop_orphan_attempts(engine) == 0  # no attempt record left without its job


def test_the_list_holds_active_and_recent_deletes_with_their_bounds_and_sources(engine, catalog):
    source, _ = source_with(engine)
    append(engine, source["id"], [track("ada", 0), track("bob", 0)])
    with read_only(engine) as conn:
        newest = conn.execute(select(func.max(events.c.id))).scalar()
    everywhere = regulations.create(engine, type="delete", user_ids=["ada"], source_ids=None, actor="t")
    scoped = regulations.create(engine, type="suppress_with_delete", user_ids=["bob"], source_ids=[source["id"]], actor="t")
    regulations.create(engine, type="suppress", user_ids=["cy"], source_ids=None, actor="t")  # not a delete
    _, bounds = read_erasing(engine)
    assert set(bounds) == {("ada", 0), ("bob", source["id"])}
    assert set(bounds.values()) == {newest}  # the newest event when each was asked for

    erasing = ErasingList(engine).start()
    try:
        first, later = bounds[("ada", 0)], bounds[("ada", 0)] + 1
        job = {"source_id": source["id"], "event_id": first, "payload": b'{"userId":"ada"}'}
        assert erasing.erased(job)
        assert not erasing.erased({**job, "event_id": later})  # came after the request
        assert erasing.erased({**job, "payload": b'{"userId":"bob"}'})
        assert not erasing.erased({**job, "payload": b'{"userId":"bob"}', "source_id": source["id"] + 1})
        assert not erasing.erased({**job, "payload": b'{"userId":"cy"}'})
        assert not erasing.erased({**job, "payload": b'{"anonymousId":"ada"}'})

        # Finished: still held for RECENT_S (a lane may hold a job it claimed before), then gone.
        claimed = regulations.claim(engine, "t", 10)
        regulations.finish(engine, claimed["id"], "t", {})
        assert regulations.get(engine, everywhere["id"])["status"] == "finished"
        assert erasing.erased(job)  # the change bus refreshed it at once
        with engine.begin() as conn:
            conn.execute(update(regulations.regulations).where(regulations.regulations.c.id == everywhere["id"])
                         .values(finished_at=datetime.now(timezone.utc) - timedelta(seconds=RECENT_S + 1)))
        erasing.check()
        assert not erasing.erased(job)
        assert erasing.erased({**job, "payload": b'{"userId":"bob"}'})
        assert scoped["status"] == "pending"
    finally:
        erasing.stop()


def test_a_worker_the_change_bus_did_not_reach_reads_the_list_before_its_next_send(engine):
    """SQLite processes sharing a file hear of nothing: a send does not start on a copy read more
    than CHECK_S ago, and the look is one read however many lanes ask."""
    erasing = ErasingList(engine).start()
    erasing.stop()  # off the bus, as another process
    reads = []
    erasing.refresh = lambda *_: (reads.append(1), ErasingList.refresh(erasing))
    regulations.create(engine, type="delete", user_ids=["ada"], source_ids=None, actor="t")
    assert erasing.bounds == {} and not erasing.due()
    erasing.checked -= ErasingList.CHECK_S

    async def lanes():
        await asyncio.gather(*[erasing.catch_up() for _ in range(5)])

    asyncio.run(lanes())
    assert set(erasing.bounds) == {("ada", 0)} and reads == [1] and not erasing.due()

"""The group-commit writer's bound, on its own: what may wait is limited by events and by bytes,
a request alone may always try, and the bound is released once a group is committed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from server.ingest.writer import GroupCommitWriter, StoreBusy
from server.store import events, open_store, workspace


def _rows(source_id: int, prefix: str, n: int) -> list[dict]:
    now = datetime.now(timezone.utc)
    return events.rows_for(source_id, now, [{"type": "track", "messageId": f"{prefix}-{i}"} for i in range(n)])


def test_the_queue_is_bounded_by_events_and_bytes_and_drains(sqlite_url):
    engine = open_store(sqlite_url)
    source = workspace.create_source(engine, "Bound")
    writer = GroupCommitWriter(engine, dedupe_window=60, max_pending_events=100, max_pending_bytes=10_000)

    async def scenario():
        # Not started: nothing drains, so what is appended stays pending.
        first = asyncio.ensure_future(writer.append(_rows(source["id"], "a", 80), None, 1_000))
        await asyncio.sleep(0)
        with pytest.raises(StoreBusy, match="80 events are already waiting"):
            await writer.append(_rows(source["id"], "b", 30), None, 1_000)  # 110 > 100 events
        with pytest.raises(StoreBusy):
            await writer.append(_rows(source["id"], "c", 1), None, 9_500)  # 10,500 > 10,000 bytes
        second = asyncio.ensure_future(writer.append(_rows(source["id"], "d", 20), None, 1_000))  # fits exactly
        await asyncio.sleep(0)
        assert (writer.pending_events, writer.pending_bytes) == (100, 2_000)
        writer.start()
        assert await first == [True] * 80 and await second == [True] * 20
        assert (writer.pending_events, writer.pending_bytes) == (0, 0)
        # Drained: the same request that was refused now passes; alone, even one over the bound may try.
        assert await writer.append(_rows(source["id"], "b", 30), None, 1_000) == [True] * 30
        assert await writer.append(_rows(source["id"], "e", 150), None, 50_000) == [True] * 150

    asyncio.run(scenario())
    writer.stop()
    assert events.count_events(engine, source["id"]) == 280
    engine.dispose()


def test_while_the_store_is_failing_one_attempt_at_a_time_finds_out_and_the_rest_are_refused_at_once(tmp_path):
    from test_store_health import Lock

    path = tmp_path / "locked.db"
    engine = open_store(f"sqlite:///{path}")
    source = workspace.create_source(engine, "Locked")
    engine.dispose()
    # A busy timeout longer than the pause between attempts: an attempt outlasts it.
    engine = open_store(f"sqlite:///{path}", busy_timeout=3.0)
    writer = GroupCommitWriter(engine, dedupe_window=60, retry_every=0.2).start()
    lock = Lock(path)

    async def scenario():
        with pytest.raises(Exception) as first:  # finds the lock: the store is failing from now on
            await writer.append(_rows(source["id"], "a", 1))
        assert not isinstance(first.value, StoreBusy) and writer.failing(within=60)
        await asyncio.sleep(0.3)
        probe = asyncio.ensure_future(writer.append(_rows(source["id"], "b", 1)))  # let in: waits on the lock
        await asyncio.sleep(0.6)  # past retry_every, with the probe still waiting
        assert not probe.done()
        with pytest.raises(StoreBusy, match="the store is failing"):
            await writer.append(_rows(source["id"], "c", 1))
        assert not probe.done()  # refused at once, not after the probe's wait
        lock.release()
        assert await probe == [True]  # released within its busy wait: the probe finds the store back
        assert not writer.failing(within=60)
        assert await writer.append(_rows(source["id"], "d", 1)) == [True]  # and everyone is let in again

    try:
        asyncio.run(scenario())
    finally:
        lock.release()
        writer.stop()
        engine.dispose()

"""Live work first (server/delivery/live_first.py): a history replay's sends wait while a live
send is in flight, and the gate never holds a replay longer than its bound."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

from delivery_flow import RunningService, all_finished, append, source_with, wait_until
from delivery_vendor import Vendor, make_event, ok
from server.delivery.history import start_replay
from server.delivery.live_first import LiveFirst


def test_quiet_waits_for_the_live_work_in_flight_to_end():
    async def scenario():
        gate = LiveFirst(hold_off=0.0, max_wait=10.0)
        gate.begin()
        waiter = asyncio.create_task(gate.quiet())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # a live send is in flight
        gate.end()
        await asyncio.wait_for(waiter, 1.0)
        assert gate.waited == 1
    asyncio.run(scenario())


def test_quiet_gives_up_after_its_bound_and_holds_off_just_after_live_work():
    async def scenario():
        gate = LiveFirst(hold_off=0.0, max_wait=0.05)
        gate.begin()  # never ends: a hanging live destination
        await asyncio.wait_for(gate.quiet(), 1.0)  # the replay goes on after max_wait
        gate.end()
        held = LiveFirst(hold_off=0.2, max_wait=10.0)
        held.begin()
        held.end()
        assert held.busy  # its lane's claim is about to begin
        began = time.monotonic()
        await held.quiet()
        assert time.monotonic() - began >= 0.1 and not held.busy
    asyncio.run(scenario())


def test_a_thread_waits_for_live_work_on_the_loop_to_end():
    async def scenario():
        gate = LiveFirst(hold_off=0.0, max_wait=10.0)
        gate.begin()
        done = threading.Event()
        thread = threading.Thread(target=lambda: (gate.quiet_blocking(), done.set()))
        thread.start()
        await asyncio.sleep(0.05)
        assert not done.is_set()
        gate.end()
        await asyncio.to_thread(thread.join, 2.0)
        assert done.is_set()
    asyncio.run(scenario())


def test_a_history_replay_sends_nothing_while_a_live_send_is_in_flight(engine, catalog):
    holding, release, answered = threading.Event(), threading.Event(), {}

    def vendor_reply(record):
        if record.path == "/live" and holding.is_set():
            release.wait(10)  # the live send stays in flight until the test lets it go
            answered["live"] = time.monotonic()
        return ok(record)

    with Vendor(vendor_reply) as vendor:
        source, (live, new) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/live"}},
                                          {"slug": "webhooks", "settings": {"url": vendor.url + "/new"}})
        append(engine, source["id"], [make_event("track", event=f"Old {i}") for i in range(5)])
        with RunningService(engine, catalog, replay_rate=1000) as service:
            service.live_first.max_wait = 30.0  # here the replay waits as long as the live send takes
            wait_until(lambda: all_finished(engine, live["id"], 5) and all_finished(engine, new["id"], 5),
                       what="the first events delivered")
            holding.set()
            append(engine, source["id"], [make_event("track", event="Live")])
            vendor.wait_for(1, predicate=lambda r: r.path == "/live" and r.json()["event"] == "Live")
            wait_until(lambda: all_finished(engine, new["id"], 6), what="the live event delivered to NEW")
            answer = start_replay(engine, catalog, new["id"], since=datetime.now(timezone.utc) - timedelta(hours=1),
                                  until=None, rate=1000, actor="test")
            assert answer["queued"] == 6
            time.sleep(0.5)  # the replay's jobs are due: without the gate they would go now
            replayed = lambda: [r for r in vendor.snapshot() if r.path == "/new"][6:]  # noqa: E731
            assert replayed() == []
            release.set()
            wait_until(lambda: len(replayed()) == 6, what="the replay delivered")
    assert min(r.at for r in replayed()) >= answered["live"]
    assert sorted(r.json()["event"] for r in replayed()) == ["Live", *[f"Old {i}" for i in range(5)]]


def test_a_history_replays_sends_start_one_at_a_time_at_its_rate():
    async def scenario():
        gate = LiveFirst(rate=100.0, hold_off=0.0, max_wait=10.0)  # 10 ms per job
        starts: list[float] = []

        async def send(jobs: int) -> None:
            await gate.turn(jobs)
            # When the gate let this send start: it spaces the next one from that moment (read
            # before anything else runs; a clock read here instead would include the time this
            # task waited for the CPU, which on a busy machine shortened the next gap).
            starts.append(gate._next - jobs / gate.rate)
        await asyncio.gather(*(send(1) for _ in range(5)), send(3), send(1))
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        # Started together, they leave one by one: 10 ms after a one-job send, 30 ms after three.
        assert all(gap >= 0.0099 for gap in gaps[:5]) and gaps[5] >= 0.0299, gaps
    asyncio.run(scenario())

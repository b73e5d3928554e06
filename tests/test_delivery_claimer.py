"""The claimer (server/delivery/claimer.py): asks that arrive together are claimed together, at
most once per ``min_interval``, except an urgent ask (a lane starting on new work), which does
not wait that interval out."""

from __future__ import annotations

import asyncio
import threading

from delivery_flow import append, source_with
from delivery_vendor import make_event
from server.delivery.claimer import Claimer
from server.store import fanout


def test_an_urgent_ask_is_claimed_without_waiting_out_the_interval(engine):
    source, (first, second) = source_with(engine, {"slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/a"}},
                                          {"slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/b"}})
    append(engine, source["id"], [make_event("track", event=f"E{i}") for i in range(4)])
    fanout.ensure_cursor(engine)
    fanout.fanout_pass(engine, lambda event, kind, candidates: [d["id"] for d in candidates], fanout.GapTracker())

    async def scenario():
        claimer = Claimer(engine, "w1", 60, min_interval=30.0)  # only urgency can cut it short
        running, go_on, real = threading.Event(), threading.Event(), claimer._claim

        def slow_first(wants):  # the first claim is still running when the next ask comes
            if claimer.claims == 0:
                running.set()
                go_on.wait(10)
            return real(wants)
        claimer._claim = slow_first
        first_claim = asyncio.create_task(claimer.claim(first["id"], 1))
        await asyncio.to_thread(running.wait, 10)
        waiting = asyncio.create_task(claimer.claim(first["id"], 1))  # a busy lane asks for more
        await asyncio.sleep(0.05)
        go_on.set()
        _, jobs = await asyncio.wait_for(first_claim, 10)
        assert len(jobs) == 1
        await asyncio.sleep(0.3)
        assert not waiting.done() and claimer.claims == 1  # it waits for the interval
        _, urgent = await asyncio.wait_for(claimer.claim(second["id"], 2, urgent=True), 10)
        assert len(urgent) == 2 and claimer.claims == 2
        _, gathered = await asyncio.wait_for(waiting, 10)  # served by the same claim
        assert len(gathered) == 1
    asyncio.run(scenario())

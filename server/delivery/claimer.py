"""One claimer for all of a worker's lanes: what they ask for at about the same time is claimed
in one transaction (``server/store/claims.py``), with the destinations' current settings read in
one more statement.

Why: with a lane per destination, claiming lane by lane made the store work per delivered job
grow with the number of destinations (each lane's claims get smaller as its share of the sends
shrinks). Gathered here, a pass costs the same few statements for one lane or a hundred.

A lane asks with ``await claimer.claim(destination_id, limit)`` and gets ``(destination or None,
jobs)``. Asks that arrive while a claim runs wait for the next one (at most one claim runs at a
time, and at most one per ``min_interval`` seconds, so that a burst of finished sends across
many lanes becomes one claim). Jobs claimed for a lane that stopped waiting (cancelled at
shutdown) are released at once rather than left to their lease.

An *urgent* ask — from a lane with nothing claimed and nothing in flight, so new work, such as a
live event's job the fan-out just queued — does not wait out ``min_interval``: it is there to
gather the asks of busy lanes, and a live event should not wait 5 ms because another lane (a
history replay's, twenty times a second) claimed just before it (bench/replay.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.store import claims, workspace
from server.store import delivery as store

log = logging.getLogger("switchboard.delivery")

Claimed = tuple[dict[str, Any] | None, list[dict[str, Any]]]


class Claimer:
    def __init__(self, engine: Engine, owner: str, lease_seconds: float, min_interval: float = 0.005):
        self.engine, self.owner, self.lease_seconds = engine, owner, lease_seconds
        self.min_interval = min_interval
        self._wants: dict[int, tuple[int, asyncio.Future]] = {}
        self._task: asyncio.Task | None = None
        self._urgent = asyncio.Event()  # an urgent ask came (bound to the loop at its first wait)
        self.claims = 0  # transactions run (tests and benchmarks read it)

    async def claim(self, destination_id: int, limit: int, *, urgent: bool = False) -> Claimed:
        future = asyncio.get_running_loop().create_future()
        if urgent:
            self._urgent.set()
        previous = self._wants.get(destination_id)
        if previous is not None and not previous[1].done():  # one ask per lane; never happens twice
            previous[1].set_result((None, []))
        self._wants[destination_id] = (limit, future)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="delivery-claimer")
        return await future

    async def _run(self) -> None:
        last = 0.0
        try:
            while self._wants:
                # Let every lane woken by the same finished sends ask before claiming.
                pause = last + self.min_interval - time.monotonic()
                if pause > 0 and not self._urgent.is_set():
                    try:
                        await asyncio.wait_for(self._urgent.wait(), pause)
                    except asyncio.TimeoutError:
                        pass
                self._urgent.clear()
                wants, self._wants = self._wants, {}
                last = time.monotonic()
                try:
                    found = await run_in_threadpool(self._claim, {d: n for d, (n, _) in wants.items()})
                except Exception as exc:
                    for _, future in wants.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.claims += 1
                orphans: list[int] = []
                for destination_id, (_, future) in wants.items():
                    got = found.get(destination_id, (None, []))
                    if future.done():  # the lane stopped waiting: give its jobs back now
                        orphans += [job["id"] for job in got[1]]
                    else:
                        future.set_result(got)
                if orphans:
                    try:
                        await run_in_threadpool(store.release, self.engine, self.owner, orphans)
                    except Exception:
                        log.exception("releasing leases failed; they expire on their own")
        finally:
            self._task = None

    def _claim(self, wants: dict[int, int]) -> dict[int, Claimed]:
        jobs = claims.claim_many(self.engine, wants, self.owner, self.lease_seconds)
        destinations = workspace.get_destinations(self.engine, list(jobs)) if jobs else {}
        return {d: (destinations.get(d), found) for d, found in jobs.items()}

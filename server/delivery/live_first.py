"""Live work first: a history replay's sends and queueing wait for a quiet moment.

A replay releases its jobs at a bounded rate (``replay_queue.py``), but each release still costs
the worker a claim, its sends on the event loop and a result write, and each queueing chunk
a few milliseconds of routing and an insert. When one of those ran just as a live event came
in, the live event waited behind it, and live delivery's p99 beside a 100k-event replay was
1.3–1.9× its usual (bench/replay.py): at 200 replayed events/s such collisions hit a few live
events in a hundred, which is exactly the tail.

So the worker counts its live work in flight — fan-out passes and sends of jobs that are not a
replay's — and a replay's send (``Lane._deliver``) or queueing chunk (``ReplayQueuer``) starts
only when none is in flight and none has ended within ``HOLD_OFF_S`` (the fan-out's jobs reach
their lane's claim a moment after the pass ends). It waits at most ``MAX_WAIT_S``, so a steady
live stream or a hanging live destination slows a replay by that much per step and never
stops it; replay sends already started are not interrupted. So the replay's rate is a ceiling:
beside steady live traffic it goes slower (docs/delivery.md, "Live traffic first").

A history replay's sends also start one at a time, ``jobs / rate`` seconds apart (``turn``):
its jobs come due ten at a time (``replay_queue.TICK_S``), and ten sends started together — or,
after a wait for quiet, the sends of several ticks — kept the event loop busy for milliseconds,
and a live event that arrived then waited behind all of them. Spaced out, a live event meets at
most one. (Dead letters queued again are not a history replay: they wait for quiet, unspaced.)

All counting happens on the event loop; threads (the queuer's) wait on a ``threading.Event``.
"""

from __future__ import annotations

import asyncio
import threading
import time

HOLD_OFF_S = 0.002  # after live work ends: its next step (a lane's claim) is about to begin
MAX_WAIT_S = 0.05  # a replay step waits at most this for a quiet moment


class LiveFirst:
    def __init__(self, *, rate: float = 200.0, hold_off: float = HOLD_OFF_S, max_wait: float = MAX_WAIT_S):
        self.rate, self.hold_off, self.max_wait = rate, hold_off, max_wait
        self._next = 0.0  # monotonic time the next history-replay send may start
        self._turns: asyncio.Lock | None = None
        self._live = 0
        self._ended = 0.0  # monotonic time the last live work ended
        self._idle = asyncio.Event()
        self._idle.set()
        self._quiet = threading.Event()  # for threads: set while no live work is in flight
        self._quiet.set()
        self.waited = 0  # replay steps that waited (tests read it)

    def begin(self) -> None:
        """Live work started (on the event loop)."""
        self._live += 1
        self._idle.clear()
        self._quiet.clear()

    def end(self) -> None:
        """Live work ended (on the event loop)."""
        self._live = max(0, self._live - 1)
        if not self._live:
            self._ended = time.monotonic()
            self._idle.set()
            self._quiet.set()

    @property
    def busy(self) -> bool:
        return self._live > 0 or time.monotonic() - self._ended < self.hold_off

    async def quiet(self) -> None:
        """Wait (at most ``max_wait``) until no live work is in flight or just ended."""
        deadline = time.monotonic() + self.max_wait
        if self.busy:
            self.waited += 1
        while self.busy:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._live:
                try:
                    await asyncio.wait_for(self._idle.wait(), left)
                except asyncio.TimeoutError:
                    return
            else:
                await asyncio.sleep(min(left, self._ended + self.hold_off - time.monotonic()))

    async def turn(self, jobs: int) -> None:
        """A history replay's send of ``jobs`` jobs starts: after the previous one's spacing,
        then at a quiet moment."""
        if self._turns is None:
            self._turns = asyncio.Lock()
        async with self._turns:
            wait = self._next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.quiet()
            # Spaced from this start, not from the schedule: a replay that waited for quiet does
            # not catch up (catching up at twice the pace put live p50 and p99 at 1.2× and 1.4×).
            self._next = time.monotonic() + jobs / self.rate

    def quiet_blocking(self) -> None:
        """``quiet`` for a thread (the replay queuer's)."""
        deadline = time.monotonic() + self.max_wait
        while self.busy:
            left = deadline - time.monotonic()
            if left <= 0 or (self._live and not self._quiet.wait(left)):
                return
            if not self._live:
                time.sleep(max(0.0, min(left, self._ended + self.hold_off - time.monotonic())))

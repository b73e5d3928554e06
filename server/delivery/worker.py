"""The delivery service: fan-out loop, one lane per destination, and a batched result writer.

- The fan-out loop turns new log entries into jobs (``server/store/fanout.py``, routed by
  ``router.route``). It sleeps on the change bus (``notify.EVENTS``: this process's appends, and
  other processes' through NOTIFY on PostgreSQL); a safety poll every ``safety_poll`` seconds
  covers a lost notification.
- The dispatcher starts a *lane* for every destination that has due jobs. It looks for them when
  told (the fan-out's jobs, a finished lane, a retry written, ``notify.JOBS``: a replay or
  released leases) and otherwise sleeps until the next job comes due (``store.due_work``), at
  most ``safety_poll`` seconds: an idle worker queries nothing but its heartbeat. A lane
  (``lane.py``) holds that destination's leased jobs and sends at most ``concurrency`` requests
  at a time. Lanes share nothing but the HTTP client and the claimer (``claimer.py``: what the
  lanes ask for at about the same time is claimed in one transaction), so a destination that
  hangs fills only its own lane, and the store work per job does not grow with the number of
  destinations.
- Results go to one writer task that records many outcomes per transaction (``results.py``).

Stopping: no new claims, in-flight sends get ``shutdown_grace`` seconds to finish, results are
written, and leases of jobs not finished are released so another worker takes them at once.

Dying (kill -9): a heartbeat thread (``heartbeat.py``) lets the other workers, or this one's
successor, tell within seconds and take over its leases.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import timedelta
from typing import Any, Callable

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.catalog import Catalog
from server.delivery.claimer import Claimer
from server.delivery.heartbeat import HEARTBEAT_S, STALE_AFTER_S, Heartbeat
from server.delivery.lane import MIN_SHARE, Lane
from server.delivery.live_first import LiveFirst
from server.delivery.policy import RetryPolicy
from server.delivery.replay_queuer import ReplayQueuer
from server.delivery.results import ResultWriter
from server.delivery.router import route
from server.delivery.sender import Sender
from server.store import delivery as store
from server.store import claims, fanout, notify
from server.store.erasing import ErasingList

log = logging.getLogger("switchboard.delivery")

# Delivered and skipped jobs (and attempts that are not a dead letter's) are kept this long:
# enough for the 24 h stats and for looking back a week; dead letters stay until replayed.
JOB_RETENTION = timedelta(days=7)
PRUNE_EVERY_S = 600.0
# The longest an idle worker sleeps without being told of work: it only covers a notification
# lost while a NOTIFY listener reconnected (which resynchronises anyway) or a bug.
SAFETY_POLL_S = 30.0


class DeliveryService:
    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        *,
        retry_window: float = 4 * 3600.0,
        sender: Sender | None = None,
        concurrency: int = 64,
        lease_seconds: float = 60.0,
        poll_interval: float = 0.05,
        safety_poll: float = SAFETY_POLL_S,
        backoff_base: float = 1.0,
        backoff_cap: float = 600.0,
        shutdown_grace: float = 10.0,
        owner: str | None = None,
        allow_private_egress: bool = False,
        heartbeat_interval: float = HEARTBEAT_S,
        stale_after: float = STALE_AFTER_S,
        replay_rate: float = 200.0,
    ):
        self.engine, self.catalog = engine, catalog
        self.policy = RetryPolicy(window=retry_window, base=backoff_base, cap=backoff_cap)
        self.sender = sender or Sender(allow_private_egress=allow_private_egress)
        self._own_sender = sender is None
        self.concurrency = concurrency
        self.buffer = concurrency * 4  # jobs a lane holds leased at once (queued for a free slot)
        self.budget = self.buffer * 8  # jobs all lanes hold, shared out once more than eight run
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval  # busy lanes look for newly due jobs this often
        self.safety_poll = safety_poll
        self.shutdown_grace = shutdown_grace
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.gaps = fanout.GapTracker()
        self.heartbeat_interval, self.stale_after = heartbeat_interval, stale_after
        self.live_first = LiveFirst(rate=replay_rate)  # a replay's sends and queueing wait for a quiet moment
        self.replays = ReplayQueuer(engine, catalog, replay_rate, live_first=self.live_first)  # the rest of history replays
        self.erasing = ErasingList(engine)  # users whose events a delete covers: never sent (started in start())
        self._replays_looked = 0.0  # monotonic time of its last look
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._lanes: dict[int, asyncio.Task] = {}
        self._lane_state: dict[int, Lane] = {}
        self._watched: set[int] = set()  # lanes whose last claim found nothing
        self._watcher: asyncio.Task | None = None
        self._hints: set[int] = set()  # destinations the fan-out gave jobs (start their lanes)
        self._unsubscribe: list[Callable[[], None]] = []
        self._rescan = True  # look for due jobs (the fan-out's hints need no look)
        # Whether any destination can get jobs (None: look again, settings changed). While none
        # can, appended events cost no pass at all; once one appears, the cursor jumps over the
        # events received before it (fanout.skip_unrouted): they owe nobody anything.
        self._routable: bool | None = None
        self._settings_seen = 0  # settings changes heard of (a look that raced one is redone)
        self._skipping = False  # passes were skipped: jump the cursor when a destination appears

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> "DeliveryService":
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._new_events = asyncio.Event()
        self._work = asyncio.Event()
        self._replays_told = asyncio.Event()
        await run_in_threadpool(fanout.ensure_cursor, self.engine)
        # SQLite deletes (and fsyncs away) the WAL whenever its last connection closes, and the
        # store opens a connection per transaction: holding one idle connection open for our
        # lifetime keeps every claim and result from paying for that (3–5x faster commits).
        self._keeper = self.engine.raw_connection() if self.engine.dialect.name == "sqlite" else None
        self.claimer = Claimer(self.engine, self.owner, self.lease_seconds)
        self._results = ResultWriter(self.engine, self.owner, on_retry=self._look).start()
        # Before the first claim: a restart takes over the jobs its killed predecessor leased.
        self._heartbeat = await run_in_threadpool(Heartbeat(
            self.engine, self.owner, self._taken_over, interval=self.heartbeat_interval,
            stale_after=self.stale_after).start)
        await run_in_threadpool(self.erasing.start)
        self._unsubscribe = [notify.EVENTS.subscribe(self.wake), notify.JOBS.subscribe(self._jobs_queued),
                             notify.SETTINGS.subscribe(self._settings_changed)]
        self._tasks = [
            asyncio.create_task(self._fanout_loop(), name="delivery-fanout"),
            asyncio.create_task(self._dispatch_loop(), name="delivery-dispatch"),
            asyncio.create_task(self._replay_loop(), name="delivery-replays"),
        ]
        log.info("delivery worker %s started", self.owner)
        return self

    def _taken_over(self, count: int) -> None:
        """Jobs of a dead worker were freed (called from the heartbeat thread): claim them now."""
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed() and hasattr(self, "_work"):
            loop.call_soon_threadsafe(self._look)

    def _settings_changed(self, *_: Any) -> None:
        """A source or destination changed: whether any destination is routable may have too."""
        self._settings_seen += 1
        self._routable = None
        self.wake()

    def _jobs_queued(self, destination_id: int = 0, *_: Any) -> None:
        """``notify.JOBS``: jobs were queued or released elsewhere (callable from any thread).
        One destination's may be a history replay's start: its queuer looks. So may an unnamed
        one (0: the fan-out's, released leases, another SQLite process's ring), which it looks
        at no more than once a second (the fan-out publishes one a pass)."""
        self._taken_over(0)
        loop = getattr(self, "_loop", None)
        if (destination_id or time.monotonic() - self._replays_looked >= 1.0) and loop is not None \
                and not loop.is_closed() and hasattr(self, "_replays_told"):
            loop.call_soon_threadsafe(self._replays_told.set)

    def _look(self) -> None:
        """Ask the dispatcher to look for due jobs (on the event loop)."""
        self._rescan = True
        self._work.set()

    def _route(self, event: dict[str, Any], event_type: str, destinations: list[dict[str, Any]]) -> list[int]:
        """The fan-out's routing decision (the store runs the pass, delivery decides)."""
        return route(event, event_type, True, destinations, self.catalog)

    def wake(self, max_id: int = 0, *_: Any) -> None:
        """New events were committed, up to ``max_id`` (0: unknown); callable from any thread."""
        if max_id and self._routable is False:
            return  # no destination to route them to: no pass
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._new_events.set)

    async def stop(self) -> None:
        self._stopping = self.replays.stopping = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._new_events.set()
        self._work.set()
        self._replays_told.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for state in list(self._lane_state.values()):
            state.wake.set()  # a lane sleeping until a send finishes or a poke sees the stop
        lanes = list(self._lanes.values())
        if lanes:
            await asyncio.wait(lanes, timeout=self.shutdown_grace + 1)
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
        await self._results.close()  # writes everything queued before this
        if self._own_sender:
            await self.sender.aclose()
        await run_in_threadpool(self._heartbeat.stop)  # last: it beat while in-flight sends finished
        await run_in_threadpool(self.erasing.stop)
        if self._keeper is not None:
            self._keeper.close()
        log.info("delivery worker %s stopped", self.owner)

    async def _wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for ``event`` or ``timeout``; whether the event came."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
            came = True
        except asyncio.TimeoutError:
            came = False
        event.clear()
        return came

    # ---------------------------------------------------------------- fan-out and dispatch

    async def _routing(self) -> bool:
        """Whether a pass can give any destination a job; moves the cursor over the events
        appended while none could (they owe nobody anything)."""
        if self._routable is None:
            seen = self._settings_seen
            found = await run_in_threadpool(fanout.routable_destinations, self.engine)
            if found and self._skipping:
                since = min(d["updated_at"] for d in found)
                await run_in_threadpool(fanout.skip_unrouted, self.engine, since)
            if seen == self._settings_seen:  # else a change raced the look: look again
                self._routable = bool(found)
                self._skipping = not found
            if not found:
                return False
        return self._routable is not False

    async def _fanout_loop(self) -> None:
        while not self._stopping:
            touched: set[int] = set()
            try:
                if not await self._routing():
                    # Nothing to route to: events are not even read until a destination appears.
                    # A destination added by a process that cannot tell us (the CLI on SQLite)
                    # is found by the look after each safety poll.
                    if not await self._wait(self._new_events, self.safety_poll):
                        self._routable = None
                    continue
                self.live_first.begin()
                try:
                    _, created, more = await run_in_threadpool(
                        fanout.fanout_pass, self.engine, self._route, self.gaps, touched=touched
                    )
                finally:
                    self.live_first.end()
            except Exception:
                log.exception("fan-out pass failed; retrying")
                created, more = 0, False
                await asyncio.sleep(1)
            if created:
                self._hints |= touched
                self._work.set()
            if self.gaps.blocked:
                await asyncio.sleep(fanout.GAP_SETTLE_DELAY_S)  # a gap settles in a pass or two
            elif not more:
                await self._wait(self._new_events, self.safety_poll)

    async def _dispatch_loop(self) -> None:
        next_prune = 0.0
        next_scan = last_scan = 0.0  # monotonic: when to look for due jobs next, when we last did
        while not self._stopping:
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_S
                try:
                    await run_in_threadpool(store.prune, self.engine, store.utcnow() - JOB_RETENTION)
                except Exception:
                    log.exception("pruning old delivery records failed")
            # Destinations the fan-out just gave jobs start a lane at once, without a look. A
            # look for every destination with due jobs runs when asked (a lane ended, a retry was
            # written, jobs were replayed or released, leases taken over) but at most once per
            # poll interval: run after every fan-out pass, it read the queued jobs of
            # destinations whose lanes were busy over and over (a hanging vendor's backlog cost
            # its healthy neighbours a few percent of their throughput). Otherwise it runs when
            # the next job comes due, and at the latest after the safety poll.
            if self._rescan:
                self._rescan = False
                next_scan = min(next_scan, last_scan + self.poll_interval)
            # A running lane is poked instead (it claims again, even after finding nothing).
            hinted = [d for d in self._hints if not self._poke(d)]
            self._hints.clear()
            ready: list[int] = []
            if time.monotonic() >= next_scan:
                last_scan = time.monotonic()
                try:
                    ready, due_in = await run_in_threadpool(store.due_work, self.engine, list(self._lanes))
                    wait = self.safety_poll if due_in is None else min(max(due_in, self.poll_interval), self.safety_poll)
                    next_scan = last_scan + wait
                except Exception:
                    log.exception("looking for due jobs failed; retrying")
                    next_scan = last_scan + 1.0
            for destination_id in dict.fromkeys([*hinted, *ready]):
                if destination_id not in self._lanes and not self._stopping:
                    self._start_lane(destination_id)
            await self._wait(self._work, max(0.0, min(next_scan, next_prune) - time.monotonic()))

    async def _replay_loop(self) -> None:
        """Queue the rest of history replays, a chunk at a time as their schedule runs short
        (``replay_queuer.py``); a look at start continues those a killed process left."""
        while not self._stopping:
            self._replays_looked = time.monotonic()
            try:
                wait = await run_in_threadpool(self.replays.advance)
            except Exception:
                log.exception("queueing history replays failed; retrying")
                wait = 1.0
            timeout = self.safety_poll if wait is None else min(max(wait, self.poll_interval), self.safety_poll)
            await self._wait(self._replays_told, timeout)

    # ---------------------------------------------------------------- lanes (lane.py)

    def share(self) -> int:
        """Jobs one lane may hold leased: its buffer while few lanes run; the budget split
        between them when many do (never below ``MIN_SHARE``)."""
        return min(self.buffer, max(min(MIN_SHARE, self.buffer), self.budget // max(1, len(self._lanes))))

    def _start_lane(self, destination_id: int) -> None:
        lane = self._lane_state[destination_id] = Lane(self, destination_id)
        self._lanes[destination_id] = asyncio.create_task(self._run_lane(lane), name=f"delivery-lane-{destination_id}")

    async def _run_lane(self, lane: Lane) -> None:
        try:
            await lane.run()
        finally:
            self._lanes.pop(lane.destination_id, None)
            self._lane_state.pop(lane.destination_id, None)
            if not self._stopping:
                self._look()  # more may have become due while it wound down

    def _poke(self, destination_id: int) -> bool:
        lane = self._lane_state.get(destination_id)
        if lane is None:
            return False
        lane.poke()
        return True

    def watch(self, destination_id: int) -> None:
        """A lane found nothing to claim: look for due jobs of it (with every other such lane,
        in one statement) each poll interval while it runs."""
        self._watched.add(destination_id)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_loop(), name="delivery-watch")

    async def _watch_loop(self) -> None:
        try:
            while self._watched and not self._stopping:
                await asyncio.sleep(self.poll_interval)
                ids = [d for d in self._watched if d in self._lane_state and self._lane_state[d].idle]
                self._watched = set(ids)
                try:
                    due = await run_in_threadpool(claims.due_among, self.engine, ids) if ids else []
                except Exception:
                    log.exception("looking for due jobs failed; retrying")
                    continue
                for destination_id in due:
                    self._watched.discard(destination_id)
                    self._poke(destination_id)
        finally:
            self._watcher = None

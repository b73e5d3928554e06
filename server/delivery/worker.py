"""The delivery service: fan-out loop, one lane per destination, and a batched result writer.

- The fan-out loop turns new log entries into jobs (``server/store/fanout.py``, routed by
  ``router.route``). It sleeps on the change bus (``notify.EVENTS``: this process's appends, and
  other processes' through NOTIFY on PostgreSQL); a safety poll every ``safety_poll`` seconds
  covers a lost notification.
- The dispatcher starts a *lane* for every destination that has due jobs. It looks for them when
  told (the fan-out's jobs, a finished lane, a retry written, ``notify.JOBS``: a replay or
  released leases) and otherwise sleeps until the next job comes due (``store.due_work``), at
  most ``safety_poll`` seconds: an idle worker queries nothing but its heartbeat. A lane claims that
  destination's jobs (leases), and sends at most ``concurrency`` requests at a time. Lanes
  share nothing but the HTTP client, so a destination that hangs fills only its own lane.
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

import orjson
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.catalog import Catalog, effective_settings
from server.delivery.heartbeat import HEARTBEAT_S, STALE_AFTER_S, Heartbeat
from server.delivery.policy import RetryPolicy
from server.delivery.replay_queuer import ReplayQueuer
from server.delivery.results import ResultWriter, job_result
from server.delivery.router import route, translator
from server.delivery.sender import DEAD, Outcome, Sender
from server.store import delivery as store
from server.rules import apply_filters
from server.store import fanout, notify, workspace

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
        self.buffer = concurrency * 4  # jobs a lane holds leased at once (queued behind its semaphore)
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval  # busy lanes look for newly due jobs this often
        self.safety_poll = safety_poll
        self.shutdown_grace = shutdown_grace
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.gaps = fanout.GapTracker()
        self.heartbeat_interval, self.stale_after = heartbeat_interval, stale_after
        self.replays = ReplayQueuer(engine, catalog, replay_rate)  # queues the rest of history replays
        self._replays_looked = 0.0  # monotonic time of its last look
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._lanes: dict[int, asyncio.Task] = {}
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
        self._results = ResultWriter(self.engine, self.owner, on_retry=self._look).start()
        # Before the first claim: a restart takes over the jobs its killed predecessor leased.
        self._heartbeat = await run_in_threadpool(Heartbeat(
            self.engine, self.owner, self._taken_over, interval=self.heartbeat_interval,
            stale_after=self.stale_after).start)
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
        if self._keeper is not None:
            self._keeper.close()
        log.info("delivery worker %s stopped", self.owner)

    async def _wait(self, event: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        event.clear()

    # ---------------------------------------------------------------- fan-out and dispatch

    async def _routing(self) -> bool:
        """Whether a pass can give any destination a job; moves the cursor over the events
        appended while none could (they owe nobody anything)."""
        if self._routable is None:
            seen = self._settings_seen
            found = [d for d in await run_in_threadpool(fanout.routable_destinations, self.engine)
                     if translator(d["slug"]) is not None]
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
                    await self._wait(self._new_events, self.safety_poll)
                    continue
                _, created, more = await run_in_threadpool(
                    fanout.fanout_pass, self.engine, self._route, self.gaps, touched=touched
                )
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
            hinted = [d for d in self._hints if d not in self._lanes]
            self._hints.difference_update(hinted)
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
                    self._lanes[destination_id] = asyncio.create_task(
                        self._lane(destination_id), name=f"delivery-lane-{destination_id}"
                    )
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

    # ---------------------------------------------------------------- one destination's lane

    async def _lane(self, destination_id: int) -> None:
        semaphore = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task] = set()
        claimed: dict[int, dict[str, Any]] = {}  # leased and not yet finished
        found_nothing = False
        try:
            while not self._stopping:
                room = self.buffer - len(claimed)
                jobs = []
                # Claim again only once the jobs waiting for a free slot run low: one claim
                # transaction per few dozen sends, not one per send. After an empty claim, look
                # (without a lock) before claiming again.
                waiting = len(claimed) - min(len(tasks), self.concurrency)
                if room > 0 and waiting < self.concurrency and (
                    not found_nothing or await run_in_threadpool(store.has_due, self.engine, destination_id)
                ):
                    jobs = await run_in_threadpool(
                        store.claim, self.engine, destination_id, self.owner, room, self.lease_seconds
                    )
                    found_nothing = not jobs
                if not jobs and not tasks:
                    break
                if jobs:
                    destination = await run_in_threadpool(_destination_or_none, self.engine, destination_id)
                    for job in jobs:
                        claimed[job["id"]] = job
                    for group in self._groups(destination, jobs):
                        task = asyncio.create_task(self._deliver(semaphore, destination, group, claimed))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                if tasks:
                    # Wake on the first finished send, or soon anyway to claim newly due jobs.
                    await asyncio.wait(set(tasks), timeout=self.poll_interval if room > 0 else None,
                                       return_when=asyncio.FIRST_COMPLETED)
        except Exception:
            log.exception("delivery lane %s failed", destination_id)
        finally:
            if tasks:
                done, pending = await asyncio.wait(set(tasks), timeout=self.shutdown_grace)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            if claimed:
                try:
                    await run_in_threadpool(store.release, self.engine, self.owner, list(claimed))
                except Exception:
                    log.exception("releasing leases failed; they expire on their own")
            self._lanes.pop(destination_id, None)
            if not self._stopping:
                self._look()  # more may have become due while we wound down

    def _groups(self, destination: dict[str, Any] | None, jobs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """One job per request, except for translators that batch (webhooks with batch_size > 1)."""
        if destination is not None:
            module = translator(destination["slug"])
            size = int(destination["settings"].get("batch_size") or 1)
            if module is not None and hasattr(module, "translate_batch") and size > 1:
                return [jobs[i:i + size] for i in range(0, len(jobs), size)]
        return [[job] for job in jobs]

    async def _deliver(self, semaphore, destination, jobs: list[dict[str, Any]], claimed: dict) -> None:
        async with semaphore:
            if self._stopping:
                return  # never started: the lease is released on the way out
            if not self._lease_left(jobs):
                # Waited in this lane's queue until too little of the lease is left for a send:
                # another worker may claim it meanwhile, and both would send. Give it back (it
                # is still ours, so nobody else holds it); whoever claims it next sends it once.
                # (Added by the scale-out work.)
                ids = [job["id"] for job in jobs]
                for job_id in ids:
                    claimed.pop(job_id, None)
                try:
                    await run_in_threadpool(store.release, self.engine, self.owner, ids)
                except Exception:
                    log.exception("releasing leases failed; they expire on their own")
                return
            try:
                outcome, reason = await self._attempt(destination, jobs)
                now = store.utcnow()
                results = [job_result(job, outcome, reason, self.policy, now) for job in jobs]
            except Exception:  # a bug here must not strand the jobs: their leases are released
                log.exception("delivering jobs %s failed", [job["id"] for job in jobs])
                return
            for job, result in zip(jobs, results):
                self._results.put(result)
                claimed.pop(job["id"], None)

    def _lease_left(self, jobs: list[dict[str, Any]]) -> bool:
        """Enough of every job's lease is left to send it (a send may take the sender's timeout)."""
        margin = timedelta(seconds=min(getattr(self.sender, "timeout", 5.0), self.lease_seconds / 2))
        return min(job["lease_until"] for job in jobs) - store.utcnow() >= margin

    async def _attempt(self, destination, jobs) -> tuple[Outcome, str | None]:
        """(outcome, reason for a skip or a translation failure)."""
        if destination is None:
            return Outcome("skipped"), "the destination was removed"
        if not destination["enabled"] or destination["mode"] != "cloud":
            return Outcome("skipped"), "the destination was disabled or switched to device mode"
        manifest = self.catalog.get(destination["slug"])
        module = translator(destination["slug"])
        if manifest is None or module is None:
            return Outcome("skipped"), f"{destination['slug']} has no cloud translator"
        settings = effective_settings(manifest, destination["settings"], "cloud")
        try:
            # Filters decided at fan-out which events come here; their property changes apply now,
            # with the filters as they are (a job routed before a change may be dropped now).
            filters = destination.get("filters")
            sent = [apply_filters(orjson.loads(job["payload"]), filters)[0] for job in jobs]
            payloads = [p for p in sent if p is not None]
            if not payloads:
                return Outcome("skipped"), "dropped by the destination's filters"
            if len(jobs) > 1:
                requests = module.translate_batch(payloads, settings)
            else:
                requests = module.translate(payloads[0], settings)
        except Exception as exc:  # a bad setting or template: permanent until fixed (then replay)
            return Outcome(DEAD), f"could not build the request: {type(exc).__name__}: {exc}"
        if not requests:
            return Outcome("skipped"), None
        try:
            return await self.sender.perform(requests, clock=store.utcnow), None
        except Exception as exc:
            return Outcome(DEAD), f"could not send: {type(exc).__name__}: {exc}"

def _destination_or_none(engine: Engine, destination_id: int) -> dict[str, Any] | None:
    try:
        return workspace.get_destination(engine, destination_id)
    except workspace.NotFound:
        return None

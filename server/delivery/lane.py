"""One destination's lane: its claimed jobs, at most ``concurrency`` sends at a time.

Lanes share nothing but the HTTP client and the claimer, so a destination that hangs fills only
its own lane. What a lane may hold is its *share*: ``service.buffer`` jobs (4 × concurrency)
while few lanes run, less when many do (``service.budget`` split between the running lanes, at
least ``MIN_SHARE``). So the jobs a worker holds leased — and the send tasks it keeps — follow
what it can send, not the number of destinations: with a hundred lanes of 256 jobs each, twenty
thousand waiting tasks made every garbage collection and every wake cost more per job.

A lane claims (through the service's ``Claimer``, which gathers the asks of all lanes into one
transaction) when a quarter of its share is free, starts a task per request only when one of its
slots is free (``concurrency``, or half its share if that is less: the rest wait as plain
data), and sleeps until a send
finishes or it is *poked*: the fan-out gave its destination jobs, or the service's look for due
jobs (one statement for every lane that found nothing at its last claim) found some. It ends
when it has nothing claimed and its last claim found nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool

from server.catalog import effective_settings
from server.delivery.results import job_result
from server.delivery.router import translator
from server.delivery.sender import DEAD, Outcome
from server.rules import apply_filters
from server.store import delivery as store

if TYPE_CHECKING:
    from server.delivery.worker import DeliveryService

log = logging.getLogger("switchboard.delivery")

MIN_SHARE = 8


class Lane:
    def __init__(self, service: "DeliveryService", destination_id: int):
        self.service, self.destination_id = service, destination_id
        self.wake = asyncio.Event()
        self.poked = False
        self.idle = False  # its last claim found nothing: it waits for a poke
        # Jobs per request (a batching destination's batch_size, known after a claim). The share
        # counts *requests*: held to its share in jobs, a lane with batch_size 20 could not keep
        # its concurrency busy and waited for a claim every few requests.
        self.per_request = 1

    def poke(self) -> None:
        """Jobs may be due for this destination: claim again."""
        self.poked = True
        self.wake.set()

    async def run(self) -> None:
        service = self.service
        running: set[asyncio.Task] = set()
        waiting: deque = deque()  # (destination, group) claimed, not started
        claimed: dict[int, dict[str, Any]] = {}  # leased and not yet finished

        def finished(task: asyncio.Task) -> None:
            running.discard(task)
            self.wake.set()

        try:
            while not service._stopping:
                if self.poked:
                    self.poked, self.idle = False, False
                share = service.share() * self.per_request
                room = share - len(claimed)
                # Claim once a quarter of the share is free: one ask per many sends, and the
                # claimer serves the asks of all lanes in one transaction.
                if not self.idle and room > 0 and (len(claimed) <= share * 3 // 4 or not running):
                    destination, jobs = await service.claimer.claim(self.destination_id, room,
                                                                    urgent=not claimed and not running)
                    self.idle = not jobs
                    if jobs:
                        self.per_request = _batch_size(destination)
                    for job in jobs:
                        claimed[job["id"]] = job
                    waiting.extend((destination, group) for group in self._groups(destination, jobs))
                # Sends in flight: ``concurrency``, or half the share when many lanes split the
                # budget (their sends mostly wait for the same vendor's connections anyway).
                slots = min(service.concurrency, max(MIN_SHARE, service.share() // 2))
                while waiting and len(running) < slots and not service._stopping:
                    destination, group = waiting.popleft()
                    task = asyncio.create_task(self._deliver(destination, group, claimed))
                    running.add(task)
                    task.add_done_callback(finished)
                if not running and not waiting and self.idle and not self.poked:
                    break
                if self.idle:
                    service.watch(self.destination_id)
                self.wake.clear()
                if not self.poked and (running or self.idle):
                    await self.wake.wait()
        except Exception:
            log.exception("delivery lane %s failed", self.destination_id)
        finally:
            if running:
                done, pending = await asyncio.wait(set(running), timeout=service.shutdown_grace)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            if claimed:
                try:
                    await run_in_threadpool(store.release, service.engine, service.owner, list(claimed))
                except Exception:
                    log.exception("releasing leases failed; they expire on their own")

    def _groups(self, destination: dict[str, Any] | None, jobs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """One job per request, except for translators that batch (webhooks with batch_size > 1)."""
        size = _batch_size(destination)
        if size > 1:
            return [jobs[i:i + size] for i in range(0, len(jobs), size)]
        return [[job] for job in jobs]

    async def _deliver(self, destination, jobs: list[dict[str, Any]], claimed: dict) -> None:
        service = self.service
        if service._stopping:
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
                await run_in_threadpool(store.release, service.engine, service.owner, ids)
            except Exception:
                log.exception("releasing leases failed; they expire on their own")
            return
        # Live work first (live_first.py): a replay's send waits for a quiet moment; a live one
        # is counted while it runs.
        replayed = all(job.get("replay_id") is not None for job in jobs)
        if replayed and all(job["replay_id"] != store.DEAD_LETTER_REPLAY for job in jobs):
            await service.live_first.turn(len(jobs))  # a history replay's: spaced out too
        elif replayed:
            await service.live_first.quiet()
        else:
            service.live_first.begin()
        try:
            # A delete regulation may have covered some of them since the claim: those are not
            # sent, and once sent, not recorded (server/store/erasing.py).
            if service.erasing.due():
                await service.erasing.catch_up()
            jobs = self._not_erased(jobs, claimed)
            if not jobs:
                return
            outcome, reason = await self._attempt(destination, jobs, self._pool_until(jobs))
            jobs = self._not_erased(jobs, claimed)
            now = store.utcnow()
            results = [job_result(job, outcome, reason, service.policy, now) for job in jobs]
        except Exception:  # a bug here must not strand the jobs: their leases are released
            log.exception("delivering jobs %s failed", [job["id"] for job in jobs])
            return
        finally:
            if not replayed:
                service.live_first.end()
        for job, result in zip(jobs, results):
            service._results.put(result)
            claimed.pop(job["id"], None)

    def _not_erased(self, jobs: list[dict[str, Any]], claimed: dict) -> list[dict[str, Any]]:
        """The jobs no delete regulation covers. The others are forgotten, not released: the
        deletion removes them (had it failed, their leases run out and they are sent then)."""
        erasing = self.service.erasing
        if not erasing.bounds:
            return jobs
        kept = []
        for job in jobs:
            if erasing.erased(job):
                claimed.pop(job["id"], None)
            else:
                kept.append(job)
        return kept

    def _margin(self) -> timedelta:
        return timedelta(seconds=min(getattr(self.service.sender, "timeout", 5.0), self.service.lease_seconds / 2))

    def _lease_left(self, jobs: list[dict[str, Any]]) -> bool:
        """Enough of every job's lease is left to send it (a send may take the sender's timeout)."""
        return min(job["lease_until"] for job in jobs) - store.utcnow() >= self._margin()

    def _pool_until(self, jobs: list[dict[str, Any]]) -> float:
        """How long (``time.monotonic()``) a send may wait for a free connection to its origin:
        until only the margin of the lease is left, as ``_lease_left`` checks before it starts.
        Many destinations on one vendor host share its connection cap, so sends queue there."""
        left = min(job["lease_until"] for job in jobs) - store.utcnow() - self._margin()
        return time.monotonic() + max(0.0, left.total_seconds())

    async def _attempt(self, destination, jobs, pool_until: float | None = None) -> tuple[Outcome, str | None]:
        """(outcome, reason for a skip or a translation failure)."""
        if destination is None:
            return Outcome("skipped"), "the destination was removed"
        if not destination["enabled"] or destination["mode"] != "cloud":
            return Outcome("skipped"), "the destination was disabled or switched to device mode"
        manifest = self.service.catalog.get(destination["slug"])
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
            return await self.service.sender.perform(requests, clock=store.utcnow, pool_until=pool_until), None
        except Exception as exc:
            return Outcome(DEAD), f"could not send: {type(exc).__name__}: {exc}"


def _batch_size(destination: dict[str, Any] | None) -> int:
    """Jobs per request: batch_size for translators that batch (webhooks), else 1."""
    if destination is not None:
        module = translator(destination["slug"])
        size = int(destination["settings"].get("batch_size") or 1)
        if module is not None and hasattr(module, "translate_batch") and size > 1:
            return size
    return 1

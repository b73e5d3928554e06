"""The background work of the privacy plane: running delete regulations and pruning old data.

One asyncio task per process (``switchboard serve`` with delivery workers on, and ``switchboard
worker``). Each tick it claims a delete regulation (pending, or running under a lease that ran
out: its process died) and walks the event log in batches (``server/store/erasure.py``), each
batch one transaction that also records progress, then cleans the warehouses through the
``erasers`` the assembler handed over (the warehouse plane's ``erase_users``). A process killed
mid-way leaves the regulation ``running``; after ``LEASE_S`` another process (or the same one
restarted) takes it over from the last finished batch.

Between batches it pauses ``PAUSE_S`` so the collector's commits and the workers' claims are
never starved by a large deletion.

Between runs it sleeps on the change bus (``notify.SUPPRESSIONS``: a regulation was created, in
this process or, on PostgreSQL, any), until a running delete's lease ends (its process may have
died), or until retention is due; ``SAFETY_POLL_S`` at most. An idle runner queries nothing.

Retention runs every ``RETENTION_EVERY_S`` (first ``RETENTION_FIRST_S`` after start); on
PostgreSQL an advisory lock lets one process at a time do it. It also prunes the audit log
(SWITCHBOARD_AUDIT_RETENTION_DAYS). Each run is logged in the governance log (and so the audit
log) with its counts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import Engine

from server.catalog import Catalog
from server.config import Config
from server.store import audit, erasure, governance, notify, regulations
from server.store.erasing import ErasingList

log = logging.getLogger("switchboard.privacy")

LEASE_S = 10.0
PAUSE_S = 0.02
SAFETY_POLL_S = 30.0
ORPHAN_WAIT_S = 1.0  # lets a send that was in flight record its attempt, so that it can be dropped
PROPAGATE_S = ErasingList.CHECK_S + 1.0  # the longest a process's list of users being erased is stale
RETENTION_FIRST_S = 60.0
RETENTION_EVERY_S = 3600.0

Eraser = Callable[[Engine, Catalog, Config, list[str], "list[int] | None"], dict[str, int]]


class Stopped(Exception):
    pass


def _add(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    out = dict(total)
    for key, value in more.items():
        out[key] = out.get(key, 0) + value
    return out


def _settled_at(regulation: dict[str, Any]) -> float:
    """When (``time.time()``) every process has heard of this delete: its creation plus the
    longest a process's copy may be stale."""
    created = regulation.get("created")
    return created.timestamp() + PROPAGATE_S if isinstance(created, datetime) else 0.0


def _sleep(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep; True if the process is stopping meanwhile."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def run_regulation(engine: Engine, catalog: Catalog, config: Config, regulation: dict[str, Any], owner: str,
                   erasers: list[Eraser], stop: threading.Event | None = None) -> dict[str, Any]:
    """Carry a claimed delete regulation to its end (from where it got to); return its counts."""
    regulation_id = regulation["id"]
    counts = {"events": 0, "delivery_jobs": 0, "dead_letters": 0, **regulation["counts"]}
    stage = regulation.get("stage") or ""
    user_ids, source_ids = regulation["user_ids"], regulation["source_ids"]
    try:
        if not stage.startswith("warehouse"):
            if stage.startswith("log:"):  # the bound set at creation, or where a walk got to
                _, after_text, up_text = stage.split(":")
                after, up_to = int(after_text), int(up_text)
            else:  # stored before bounds were kept: the newest event now
                after, up_to = 0, erasure.max_event_id(engine)
            while after < up_to:
                if stop is not None and stop.is_set():
                    raise Stopped()
                batch_counts: dict[str, int] = {}

                def save(conn, last: int, found: dict[str, int]) -> bool:
                    batch_counts.update(found)
                    return regulations.save_progress(conn, regulation_id, owner, f"log:{last}:{up_to}",
                                                     _add(counts, found), LEASE_S)

                done = erasure.erase_users_batch(engine, user_ids, source_ids, after, up_to,
                                                 config.regulation_batch_size, save)
                if done is None:
                    raise Stopped()  # the lease went to another process
                after = done[0]
                counts = _add(counts, batch_counts)
                time.sleep(PAUSE_S)
            with engine.begin() as conn:
                if not regulations.save_progress(conn, regulation_id, owner, f"warehouse:{up_to}", counts, LEASE_S):
                    raise Stopped()
        # Every process's delivery workers know of this delete by now (server/store/erasing.py:
        # from then on they neither send nor record the jobs it covers). A send that was in
        # flight before records its attempt when it ends, after its job went: wait, then drop it.
        if _sleep(max(0.0, _settled_at(regulation) - time.time()) + ORPHAN_WAIT_S, stop):
            raise Stopped()
        erasure.drop_orphan_attempts(engine)
        for eraser in erasers:
            counts = _add(counts, eraser(engine, catalog, config, user_ids, source_ids))
    except Stopped:
        if stop is not None and stop.is_set():
            regulations.release(engine, regulation_id, owner)  # a graceful stop: the next process resumes at once
        return counts
    except Exception as exc:
        log.exception("regulation %s failed", regulation_id)
        regulations.finish(engine, regulation_id, owner, counts, error=str(exc)[:1000] or type(exc).__name__)
        return counts
    regulations.finish(engine, regulation_id, owner, counts)
    return counts


def run_pending(engine: Engine, catalog: Catalog, config: Config, erasers: list[Eraser], owner: str,
                stop: threading.Event | None = None) -> int:
    """Run every claimable delete regulation; how many were run."""
    ran = 0
    while stop is None or not stop.is_set():
        regulation = regulations.claim(engine, owner, LEASE_S)
        if regulation is None:
            break
        run_regulation(engine, catalog, config, regulation, owner, erasers, stop)
        ran += 1
    return ran


def run_retention(engine: Engine, config: Config, *, actor: str = "retention") -> dict[str, int] | None:
    """Prune by the retention settings; None if another process is doing it right now."""
    now = datetime.now(timezone.utc)
    with erasure.retention_lock(engine) as mine:
        if not mine:
            return None
        counts = {"dead_letters": 0, "events": 0}
        # Dead letters first: the events they held back may then go in the same run.
        if config.dead_letter_retention_days:
            counts["dead_letters"] = erasure.prune_dead_letters(
                engine, now - timedelta(days=config.dead_letter_retention_days))
        if config.event_retention_days:
            counts["events"] = erasure.prune_events(engine, now - timedelta(days=config.event_retention_days))
        erasure.drop_orphan_attempts(engine)
        if config.audit_retention_days:
            counts["audit_entries"] = audit.prune(engine, now - timedelta(days=config.audit_retention_days))
        governance.record(engine, actor=actor, action="retention", subject="event log",
                          details={"event_retention_days": config.event_retention_days,
                                   "dead_letter_retention_days": config.dead_letter_retention_days,
                                   "audit_retention_days": config.audit_retention_days},
                          counts=counts)
    return counts


class Runner:
    def __init__(self, engine: Engine, catalog: Catalog, config: Config, erasers: list[Eraser]):
        self.engine, self.catalog, self.config, self.erasers = engine, catalog, config, erasers
        self.owner = f"privacy-{uuid.uuid4().hex[:12]}"
        self.stop_flag = threading.Event()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> "Runner":
        loop = asyncio.get_running_loop()

        def wake(*_change: Any) -> None:
            loop.call_soon_threadsafe(self.wake.set)

        # A regulation created in this process (or, on PostgreSQL, any) starts at once, not at the next tick.
        self._unsubscribe = notify.SUPPRESSIONS.subscribe(wake)
        self.task = asyncio.create_task(self._loop(), name="privacy-runner")
        return self

    async def _loop(self) -> None:
        next_retention = time.monotonic() + RETENTION_FIRST_S
        while not self.stop_flag.is_set():
            self.wake.clear()  # before the pass: a regulation created during it wakes the next one
            try:
                await asyncio.to_thread(run_pending, self.engine, self.catalog, self.config, self.erasers,
                                        self.owner, self.stop_flag)
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + RETENTION_EVERY_S
                    await asyncio.to_thread(run_retention, self.engine, self.config)
                lease_end = await asyncio.to_thread(regulations.next_lease_end, self.engine)
            except Exception:
                log.exception("privacy runner pass failed")
                lease_end = 1.0
            sleep = min(SAFETY_POLL_S, max(0.0, next_retention - time.monotonic()))
            if lease_end is not None:
                sleep = min(sleep, lease_end + 0.1)
            try:
                await asyncio.wait_for(self.wake.wait(), sleep)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        self.stop_flag.set()
        self.wake.set()
        if self._unsubscribe:
            self._unsubscribe()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 30)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass

"""What a send's outcome means for its job, and the writer that records outcomes in batches.

``job_result`` turns an outcome into the job's next state: delivered (with its receipt→delivery
latency), retrying (at the policy's next time), dead (at once for a permanent error, or when the
retry window is spent) or skipped (nothing to send). ``ResultWriter`` collects them and writes
many per transaction: on SQLite every commit is an fsync, so one per send would cap throughput.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.delivery.policy import RetryPolicy
from server.delivery.sender import DEAD, DELIVERED, RETRY, Outcome
from server.store import delivery as store

log = logging.getLogger("switchboard.delivery")

MAX_BATCH = 1000


def job_result(job: dict[str, Any], outcome: Outcome, reason: str | None, policy: RetryPolicy,
               now: datetime) -> dict[str, Any]:
    """The row changes (for ``store.finish``) after one try of ``job``. In a batch every job
    gets its own copy of the shared request's attempt records."""
    last = outcome.last
    result: dict[str, Any] = {
        "job_id": job["id"], "destination_id": job["destination_id"], "next_attempt_at": now,
        "tries": 1 if outcome.attempts else 0, "attempts": [a.row() for a in outcome.attempts],
        "last_status": last.status if last else None,
        "last_error": reason or (last.error if last else None),
    }
    if outcome.outcome == DELIVERED:
        # A replayed job (a replay window, or dead letters queued again: replay_id 0) counts from
        # when the replay released it, not from the event's original receipt.
        start = job["created_at"] if job.get("replay_id") is not None else job["received_at"]
        latency = (now - start).total_seconds() * 1000
        result.update(status=store.DELIVERED, finished_at=now, latency_ms=round(latency, 3), last_error=None)
    elif outcome.outcome == RETRY:
        when = policy.next_attempt(job["created_at"], job["attempts"] + 1, now, last.retry_after)
        if when is None:
            result.update(status=store.DEAD, finished_at=now,
                          last_error=f"gave up after the retry window ({policy.window:g}s): {last.error}")
            if result["attempts"]:  # the series counts dead-letterings from attempts
                result["attempts"][-1] = {**result["attempts"][-1], "outcome": store.DEAD,
                                          "error": result["last_error"]}
        else:
            result.update(status=store.RETRYING, next_attempt_at=when)
    elif outcome.outcome == DEAD:
        result.update(status=store.DEAD, finished_at=now)
        if not result["attempts"]:  # never sent (bad settings): still one record of why
            result["attempts"] = [{"at": now, "outcome": store.DEAD, "request": None, "status": None,
                                   "response": None, "error": reason, "latency_ms": None}]
    else:
        result.update(status=store.SKIPPED, finished_at=now)
    return result


class ResultWriter:
    """One task that writes queued results, as many per transaction as have piled up."""

    def __init__(self, engine: Engine, owner: str, on_retry: Callable[[], None] = lambda: None):
        self.engine, self.owner, self.on_retry = engine, owner, on_retry
        self._queue: asyncio.Queue = asyncio.Queue()
        self._closing = False

    def start(self) -> "ResultWriter":
        self._task = asyncio.create_task(self._run(), name="delivery-writer")
        return self

    def put(self, result: dict[str, Any]) -> None:
        self._queue.put_nowait(result)

    async def close(self) -> None:
        """Write everything queued so far, then stop."""
        self._closing = True
        self._queue.put_nowait(None)
        await self._task

    async def _run(self) -> None:
        done = False
        while not done:
            item = await self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if self._queue.empty() or len(batch) >= MAX_BATCH:
                    break
                item = self._queue.get_nowait()
            done = item is None
            await self._write(batch)
            if not done and any(r["status"] == store.RETRYING for r in batch):
                self.on_retry()  # a retry may be due sooner than the dispatcher's next look

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        while batch:
            try:
                await run_in_threadpool(store.finish, self.engine, self.owner, batch)
                return
            except Exception:
                log.exception("recording %d delivery results failed; retrying", len(batch))
                if self._closing:
                    return  # the leases run out and the jobs are sent again (at-least-once)
                await asyncio.sleep(0.5)

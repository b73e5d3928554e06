"""The users being erased, as every delivery worker must know them: it must not send their events.

A delete regulation removes a user's events with their delivery jobs, batch by batch
(``server/store/erasure.py``). A delivery lane, though, holds jobs it claimed earlier in memory
(up to its share, waiting for a free send slot) and may send them after their rows are gone.
So each delivery worker keeps this copy of "(user, source) → bound": the users of every delete
that is pending or running, or that ended in the last ``RECENT_S`` seconds, with the id of the
newest event each delete covers (the newest in the log when it was created:
``regulations.bound_of``). A lane asks ``erased(job)`` before a send starts and again when it
has finished: a job of an erased event is neither sent nor recorded (no attempt record is left
behind), and the lane forgets it; its lease runs out and, if the deletion did not remove it
(it failed), it is claimed and sent later.

Why ``RECENT_S``: a lane never starts a send once too little of its lease is left, so a job it
claimed before a delete finished is sent within a lease (60 s) of that; after five minutes none
can be left. Events after the bound (the user's new events: a delete does not stop them) are
sent as usual.

Lookups cost nothing while no delete is active or recent (the usual case); while one is, each
send parses its jobs' payloads for their userId. The copy is refreshed at once when a regulation
is created or ends (the change bus: this process at once, others through PostgreSQL ``NOTIFY``),
and a send does not start on a copy read more than ``CHECK_S`` ago (SQLite processes sharing a
file, a notification missed): the lane has it checked first (``catch_up``), so a worker that
sends nothing reads nothing. The regulation runner does not finish a delete sooner than that
after it was created (``server/privacy/runner.py``), so no process starts a send of an erased
event once the regulation says ``finished``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson
from sqlalchemy import Engine, or_, select

from server.store import notify
from server.store.engine import read_only
from server.store.regulations import (
    ALL_SOURCES, DELETES, PENDING, RUNNING, bound_of, regulations, suppression_sequence, suppression_version,
)

RECENT_S = 300.0
UNBOUNDED = sys.maxsize  # a delete stored before bounds were kept, whose walk has not started


def read_erasing(engine: Engine) -> tuple[int, dict[tuple[str, int], int]]:
    """(the suppression list's version, {(user_id, source_id or 0): newest event id covered})."""
    since = datetime.now(timezone.utc) - timedelta(seconds=RECENT_S)
    bounds: dict[tuple[str, int], int] = {}
    with read_only(engine) as conn:
        version = conn.execute(select(suppression_sequence.c.version)).scalar() or 0
        rows = conn.execute(select(regulations.c.user_ids, regulations.c.source_ids, regulations.c.stage).where(
            regulations.c.type.in_(DELETES),
            or_(regulations.c.status.in_((PENDING, RUNNING)), regulations.c.finished_at >= since),
        ))
        for row in rows:
            bound = bound_of(row.stage)
            bound = UNBOUNDED if bound is None else bound
            for user_id in row.user_ids:
                for source_id in row.source_ids or [ALL_SOURCES]:
                    key = (user_id, source_id)
                    bounds[key] = max(bounds.get(key, -1), bound)
    return version, bounds


class ErasingList:
    CHECK_S = 2.0

    def __init__(self, engine: Engine):
        self.engine = engine
        self.version = -1
        self.bounds: dict[tuple[str, int], int] = {}
        self.checked = float("-inf")  # time.monotonic() when the last read began
        self._lock = threading.Lock()
        self._catching_up: asyncio.Future | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def erased(self, job: dict[str, Any]) -> bool:
        """Whether this delivery job's event is one a delete covers (or has removed)."""
        bounds = self.bounds
        if not bounds:
            return False
        try:
            user_id = orjson.loads(job["payload"]).get("userId")
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            return False
        if not isinstance(user_id, str):
            return False
        bound = max(bounds.get((user_id, ALL_SOURCES), -1), bounds.get((user_id, job["source_id"]), -1))
        return job["event_id"] <= bound

    def refresh(self, *_change: Any) -> None:
        with self._lock:
            began = time.monotonic()
            self.version, self.bounds = read_erasing(self.engine)
            self.checked = began

    def check(self) -> None:
        """One small read: again while a delete is active or recent (recent ones expire),
        otherwise only when the version moved on."""
        began = time.monotonic()
        if self.bounds or suppression_version(self.engine) != self.version:
            self.refresh()
        else:
            self.checked = began

    def due(self) -> bool:
        return time.monotonic() - self.checked >= self.CHECK_S

    async def catch_up(self) -> None:
        """Check the store if the copy may be stale (a send is about to start): one read for
        every lane that asks meanwhile. A store that cannot be read keeps the copy as it is."""
        if self._catching_up is None:
            future = self._catching_up = asyncio.ensure_future(asyncio.to_thread(self.check))
            future.add_done_callback(lambda _: setattr(self, "_catching_up", None))
        try:
            await asyncio.shield(self._catching_up)
        except Exception:
            pass

    def start(self) -> "ErasingList":
        self.refresh()
        self._unsubscribe = notify.SUPPRESSIONS.subscribe(self.refresh)
        return self

    def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()

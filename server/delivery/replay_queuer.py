"""The delivery workers' share of history replay: queue the rest of each replay that is still
``queuing`` (server/store/replay_queue.py), a chunk at a time, just ahead of its release schedule.

The request that starts a replay queues its first events and answers; a 100k-event window would
otherwise cost the serving process seconds of parsing and routing beside live traffic (live
latency doubled while it ran: bench/replay.py). Here a chunk is queued only while fewer than
``LEAD_S`` seconds of the replay's jobs are scheduled ahead, ``CHUNK`` events at a time, so the
routing work follows the release rate — a few milliseconds a second at 200 events/s — instead of
coming in one burst.

A replay interrupted by kill -9 (of the request's process or of a worker) is continued by any
worker when it starts, or when told (``notify.JOBS``); every chunk commits exactly once.
"""

from __future__ import annotations

import logging
import time
from sqlalchemy import Engine

from server.catalog import Catalog
from server.delivery.history import replay_routes
from server.delivery.live_first import LiveFirst
from server.store import replay_queue
from server.store.delivery import utcnow

log = logging.getLogger("switchboard.delivery")

LEAD_S = 10.0  # seconds of a replay's jobs kept scheduled ahead of now
# Events per chunk here: small and frequent (0.25 s of jobs at 200/s), so that no chunk's routing
# (the GIL) or insert (SQLite's write lock) is long enough to show in live latency's tail. A
# chunk costs ~1.7 ms at 50 events, ~2.3 ms at 100 and ~1.4 ms at 25 (most of it is fixed: the
# reads, the compare-and-swap, the schedule); beside live traffic (bench/replay.py) 100 put a live
# event behind a 5 ms step now and then, and 25 steps too often.
CHUNK = 50
# While catching up (a restart after the schedule ran out, or a stretch of events the filters
# drop) queueing works at most this share of the time, so live traffic keeps its pace.
DUTY = 0.5


class ReplayQueuer:
    def __init__(self, engine: Engine, catalog: Catalog, rate: float, *, lead: float = LEAD_S,
                 live_first: LiveFirst | None = None):
        self.engine, self.catalog, self.rate, self.lead = engine, catalog, rate, lead
        self.live_first = live_first  # each chunk waits for a quiet moment (live_first.py)
        self.stopping = False

    def advance(self) -> float | None:
        """Queue what each queuing replay needs now (blocking: run it in a thread); return the
        seconds until one needs more, or None when no replay is queuing."""
        waits: list[float] = []
        for replay in replay_queue.queuing_replays(self.engine):
            routes = replay_routes(self.engine, self.catalog, replay["destination_id"])
            release_until = replay["release_until"]
            while not self.stopping:
                ahead = (release_until - utcnow()).total_seconds() if release_until else 0.0
                if ahead >= self.lead:
                    waits.append(ahead - self.lead)  # one more chunk when the lead runs short
                    break
                if self.live_first is not None:
                    self.live_first.quiet_blocking()
                began = time.monotonic()
                step = replay_queue.queue_step(self.engine, replay["id"], routes, self.rate, batch=CHUNK,
                                               durable=False)  # bookkeeping: server/store/engine.py
                if not step.more:
                    break
                release_until = step.release_until
                time.sleep((time.monotonic() - began) * (1 / DUTY - 1))
        if self.stopping:
            return 0.0
        return min(waits) if waits else None


"""Group commit: one writer thread stores every pending request's events in ONE transaction.

A request hands its rows to ``GroupCommitWriter.append`` and awaits a future (the requests of
one event-loop iteration go on the queue together, in one put). The writer thread
takes everything that is pending, calls ``events.append`` once (one transaction, one fsync on
SQLite with synchronous=FULL, one WAL flush on PostgreSQL), then resolves all those futures
with a single hop back to the event loop. While one commit is flushing, the next requests
queue up and share the next commit — so the price of durability is paid once per group, not
once per request, and the busier the server, the bigger the groups.

If a group's transaction fails, each request in it is retried alone, so one bad request (or a
constraint a validator missed) fails only itself. Requests whose own commit fails get the
exception (the collector answers 503: the client retries, and dedupe makes that safe).

The queue is bounded, by events and by bytes (of request bodies) waiting: when the store can't
keep up — a SQLite file another process holds locked, a slow disk — ``append`` raises
``StoreBusy`` at once instead of holding more (the collector answers 503 with Retry-After).
While the store is failing (the last commit failed with a store error, see
server/store/failures.py), requests are refused at once too, except one commit attempt at most
every ``retry_every`` seconds, which finds out when the store is back: one at a time, as an
attempt may wait as long as the store's busy timeout (requests let in behind it, one a second,
had waited in line for 20 s and more, past the SDKs' own timeouts, instead of a 503 at once). A failing group whose
error is the store's (locked, disk full, connection lost) fails as a whole; only other errors
are retried request by request.

Refused-event records (server/store/rejections.py) travel with their request and are written
right after the group's events, in the writer thread (never contending with it for the lock).

Between groups the writer also forgets message ids older than the dedupe window (every
``prune_every`` seconds), in the same thread so it never contends with appends for a lock.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any, Sequence

from sqlalchemy import Connection, Engine

from server.ingest import stats
from server.store import events, rejections
from server.store.failures import describe, is_unavailable

log = logging.getLogger("switchboard.collector")

Rows = list[dict[str, Any]]
# rows, future, loop, refused-event records (or None), bytes counted against the bound
_Pending = tuple[Rows, asyncio.Future, asyncio.AbstractEventLoop, "Rows | None", int]


_STOP = object()  # put on the queue by stop()


class WriterStopped(RuntimeError):
    """The writer is shutting down and accepts nothing more."""


class StoreBusy(RuntimeError):
    """Too much is waiting to be stored, or the store is failing: retry later (a 503)."""


class GroupCommitWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        dedupe_window: float,
        max_group_rows: int = 20_000,
        prune_every: float = 60.0,
        max_pending_events: int = 50_000,
        max_pending_bytes: int = 32 * 1024 * 1024,
        retry_every: float = 1.0,
    ):
        self.engine = engine
        self.dedupe_window = dedupe_window
        self.max_group_rows = max_group_rows
        self.prune_every = prune_every
        # SimpleQueue: put() is one C call that also wakes the writer (no Python-level lock dance
        # on the request path).
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # lists of _Pending, or _STOP
        # Per event loop, the requests appended during its current iteration (see _hand_over).
        self._outboxes: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._stopping = False
        self._last_prune = 0.0
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="switchboard-group-commit", daemon=True)
        # The bound: what is queued or being committed. Changed by requests (event loop) and the
        # writer thread, under one lock (uncontended: about 0.1 µs).
        self.max_pending_events = max_pending_events
        self.max_pending_bytes = max_pending_bytes
        self.pending_events = 0
        self.pending_bytes = 0
        self._pending_lock = threading.Lock()
        # Store health as the writer last saw it: monotonic time of the first failure in the
        # current run of failures (None: the last commit succeeded), and its reason.
        self.retry_every = retry_every
        self.failing_since: float | None = None
        self.last_error = ""
        self.failed_at = 0.0
        self._last_attempt = 0.0
        self._probing = False  # a request let in to find out whether the store is back is on its way
        # Observability: how many commits, and how many rows they carried.
        self.commits = 0
        self.rows_committed = 0

    def start(self) -> "GroupCommitWriter":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Commit whatever is pending, then end the thread (blocking: call it off the loop)."""
        self._stopping = True
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        # A request that slipped in as the thread ended: tell it, rather than leave it waiting.
        leftovers: list[tuple[_Pending, None, Exception]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                leftovers.extend((pending, None, WriterStopped("the server is shutting down")) for pending in item)
        self._finish(leftovers)

    async def append(self, rows: Rows, refused: Rows | None = None, size: int = 0) -> list[bool]:
        """Store ``rows`` durably; returns, per row, True if stored or False if a duplicate.

        ``refused``: records of events refused inside this request, stored with it. ``size``:
        the request body's bytes, counted against the bound while the rows wait."""
        if self._stopping:
            raise WriterStopped("the server is shutting down")
        if self.failing_since is not None:
            now = time.monotonic()
            if self._probing or now - self._last_attempt < self.retry_every:
                raise StoreBusy(f"the store is failing ({self.last_error}); retry shortly")
            # This request's commit finds out whether it is back (the writer clears the flag).
            self._last_attempt, self._probing = now, True
        count = len(rows)
        with self._pending_lock:
            if self.pending_events + count > self.max_pending_events or self.pending_bytes + size > self.max_pending_bytes:
                if self.pending_events:  # one request alone may always try
                    raise StoreBusy(f"{self.pending_events:,} events are already waiting to be stored; retry shortly")
            self.pending_events += count
            self.pending_bytes += size
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        outbox = self._outboxes.get(loop)
        if outbox is None:  # the first request of this loop iteration: hand over at its end
            outbox = self._outboxes[loop] = []
            loop.call_soon(self._hand_over, loop)
        outbox.append((rows, future, loop, refused, size))
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Put every request this loop iteration appended on the queue at once: one put (and at
        most one wake-up of the writer) per iteration instead of one per request."""
        items = self._outboxes.pop(loop, None)
        if not items:
            return
        if self._stopping:  # stop() may have drained the queue already: nothing would take them
            self._finish([(item, None, WriterStopped("the server is shutting down")) for item in items])
            return
        self._queue.put(items)

    def _finish(self, results: Sequence[tuple[_Pending, list[bool] | None, Exception | None]]) -> None:
        """Release the requests' share of the bound, then hand them their results (in that order:
        a client that sends again at once must find the room its last request freed)."""
        events_done = sum(len(item[0]) for item, _, _ in results)
        bytes_done = sum(item[4] for item, _, _ in results)
        with self._pending_lock:  # never below 0, even if a bug resolved a request twice
            self.pending_events = max(0, self.pending_events - events_done)
            self.pending_bytes = max(0, self.pending_bytes - bytes_done)
        _resolve(results)

    def failing(self, within: float) -> str | None:
        """Why the last commit failed, if it did and no more than ``within`` seconds ago."""
        if self.failing_since is None or time.monotonic() - self.failed_at > within:
            return None
        return self.last_error

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._drop_connection()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self.prune_every)
            except queue.Empty:
                self._prune()
                continue
            # Everything that queued up while the last commit was flushing: the next group.
            group: list[_Pending] = []
            size = 0
            item = first
            while True:
                if item is _STOP:
                    stopping = True  # commit what is here, then end
                else:
                    group.extend(item)
                    size += sum(len(pending[0]) for pending in item)
                if size >= self.max_group_rows:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if group:
                try:
                    self._commit(group)
                except Exception as exc:  # a bug here must not leave requests waiting forever
                    log.exception("group commit failed unexpectedly")
                    self._finish([(item, None, exc) for item in group])
            if time.monotonic() - self._last_prune >= self.prune_every:
                self._prune()

    def _connection(self) -> Connection:
        # One connection for the writer's lifetime: on SQLite, opening one per commit (NullPool,
        # pragmas) would cost more CPU than the commit itself.
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken: nothing more to release
                pass
            self._conn = None

    def _commit(self, group: list[_Pending]) -> None:
        try:
            self._commit_group(group)
        finally:
            self._probing = False  # whichever group held the probe, it has its answer now

    def _commit_group(self, group: list[_Pending]) -> None:
        rows = [row for item in group for row in item[0]]
        try:
            flags = events.append(self._connection(), rows, dedupe_window=self.dedupe_window)
        except Exception as exc:
            self._drop_connection()  # maybe broken (server restarted, disk full): start afresh
            if is_unavailable(exc):  # the store's state, not a request's content: all fail alike
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    log.error("the store cannot take writes (%s); answering 503 until it can", describe(exc))
                self.last_error = describe(exc)
                self.failed_at = self._last_attempt = time.monotonic()
                self._finish([(item, None, exc) for item in group])
                return
            if len(group) == 1:
                log.error("could not store %d events: %s", len(rows), exc)
                self._finish([(group[0], None, exc)])
                return
            log.warning("a group commit of %d requests failed (%s); committing them one by one", len(group), exc)
            for item in group:
                self._commit_group([item])
            return
        if self.failing_since is not None:
            log.warning("the store takes writes again after %.1f s", time.monotonic() - self.failing_since)
            self.failing_since = None
        refused = [record for item in group if item[3] for record in item[3]]
        if refused:
            self._record_refused(refused)
        self.commits += 1
        self.rows_committed += len(rows)
        new = sum(flags)
        stats.stored.inc(new)  # counted here, once per commit, not on the request path
        if new < len(flags):
            stats.duplicate.inc(len(flags) - new)
        stats.group_size.observe(new)
        results = []
        start = 0
        for item in group:
            end = start + len(item[0])
            results.append((item, flags[start:end], None))
            start = end
        self._finish(results)

    def _record_refused(self, records: Rows) -> None:
        # Bookkeeping about events we did not store: its failure must not fail the events we did.
        try:
            rejections.record(self._connection(), records)
        except Exception as exc:
            self._drop_connection()
            log.warning("could not record %d refused events: %s", len(records), describe(exc))

    def _prune(self) -> None:
        self._last_prune = time.monotonic()
        try:
            removed = events.prune_message_ids(self._connection(), dedupe_window=self.dedupe_window)
        except Exception as exc:  # retried at the next interval; dedupe stays exact meanwhile
            self._drop_connection()
            log.warning("pruning old message ids failed: %s", exc)
            return
        if removed:
            log.info("forgot %d message ids older than the dedupe window", removed)


def _resolve(results: Sequence[tuple[_Pending, list[bool] | None, Exception | None]]) -> None:
    """Hand results back: one call_soon_threadsafe per event loop, however many requests."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for (rows, future, loop, _refused, _size), flags, exc in results:
        by_loop.setdefault(loop, []).append((future, flags, exc))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_all, items)
        except RuntimeError:  # that loop has closed: nobody is waiting any more
            pass


def _set_all(items: list[tuple[asyncio.Future, list[bool] | None, Exception | None]]) -> None:
    for future, flags, exc in items:
        if future.done():  # the request was cancelled (client went away)
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(flags)

"""Group commit: one writer thread stores every pending request's events in ONE transaction.

A request hands its rows to ``GroupCommitWriter.append`` and awaits a future. The writer thread
takes everything that is pending, calls ``events.append`` once (one transaction, one fsync on
SQLite with synchronous=FULL, one WAL flush on PostgreSQL), then resolves all those futures
with a single hop back to the event loop. While one commit is flushing, the next requests
queue up and share the next commit — so the price of durability is paid once per group, not
once per request, and the busier the server, the bigger the groups.

If a group's transaction fails, each request in it is retried alone, so one bad request (or a
constraint a validator missed) fails only itself. Requests whose own commit fails get the
exception (the collector answers 503: the client retries, and dedupe makes that safe).

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
from server.store import events

log = logging.getLogger("switchboard.collector")

Rows = list[dict[str, Any]]
_Pending = tuple[Rows, asyncio.Future, asyncio.AbstractEventLoop]


_STOP = object()  # put on the queue by stop()


class WriterStopped(RuntimeError):
    """The writer is shutting down and accepts nothing more."""


class GroupCommitWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        dedupe_window: float,
        max_group_rows: int = 20_000,
        prune_every: float = 60.0,
    ):
        self.engine = engine
        self.dedupe_window = dedupe_window
        self.max_group_rows = max_group_rows
        self.prune_every = prune_every
        # SimpleQueue: put() is one C call that also wakes the writer (no Python-level lock dance
        # on the request path).
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        self._last_prune = 0.0
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="switchboard-group-commit", daemon=True)
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
        leftovers = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                leftovers.append((item, None, WriterStopped("the server is shutting down")))
        _resolve(leftovers)

    async def append(self, rows: Rows) -> list[bool]:
        """Store ``rows`` durably; returns, per row, True if stored or False if a duplicate."""
        if self._stopping:
            raise WriterStopped("the server is shutting down")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((rows, future, loop))
        return await future

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
                    group.append(item)
                    size += len(item[0])
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
                    _resolve([(item, None, exc) for item in group])
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
        rows = [row for item in group for row in item[0]]
        try:
            flags = events.append(self._connection(), rows, dedupe_window=self.dedupe_window)
        except Exception as exc:
            self._drop_connection()  # maybe broken (server restarted, disk full): start afresh
            if len(group) == 1:
                log.error("could not store %d events: %s", len(rows), exc)
                _resolve([(group[0], None, exc)])
                return
            log.warning("a group commit of %d requests failed (%s); committing them one by one", len(group), exc)
            for item in group:
                self._commit([item])
            return
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
        _resolve(results)

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
    for (rows, future, loop), flags, exc in results:
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

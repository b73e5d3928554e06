"""Write key → source, looked up once and then answered from memory.

Every Tracking API request names a write key; a database read per request would cost more
than the rest of the request. Entries (found or not found) live ``ttl`` seconds, and a settings
change in this process — a source disabled, a key rotated or deleted, a source created —
drops the entry at once through ``notify.SETTINGS`` (the change bus) (other processes hear of it
through server/scaleout.py on PostgreSQL; the short TTL bounds staleness everywhere else).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Generic, NamedTuple, TypeVar

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.store import notify, workspace

V = TypeVar("V")

# Write keys we issue are 32 characters; anything much longer is not worth a database read.
MAX_KEY_LENGTH = 200


class Source(NamedTuple):
    id: int
    enabled: bool


class SettingsKeyed(Generic[V]):
    """Per-write-key values read from the store, kept ``ttl`` seconds (at most ``max_entries``) and
    dropped at once by a settings change in this process (``notify.SETTINGS``). Shared by the
    write-key lookup below and the early-send facts (server/ingest/early_sources.py)."""

    def __init__(self, engine: Engine, *, ttl: float = 2.0, max_entries: int = 10_000):
        self.engine = engine
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, V]] = {}
        # Bumped by every invalidation: a read that raced with one does not keep its result.
        self._generation = 0
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None

    def subscribe(self) -> None:
        self._unsubscribe = notify.SETTINGS.subscribe(self.invalidate)

    def close(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None

    def invalidate(self, source_id: int, write_key: str, version: int) -> None:
        """Settings listener: (source_id, write_key, version); version -1 means the key is gone."""
        with self._lock:
            self._generation += 1
            self._entries.pop(write_key, None)

    def cached(self, write_key: str) -> tuple[bool, V | None]:
        """(hit, value) without touching the database: the request path's fast case."""
        entry = self._entries.get(write_key)
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def _keep(self, write_key: str, generation: int, value: V) -> V:
        """Keep ``value``, read when the generation was ``generation``, unless a change came since."""
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()  # crude, but bounded; hot keys return within a request
                self._entries[write_key] = (time.monotonic() + self.ttl, value)
        return value


class WriteKeyCache(SettingsKeyed[Source | None]):
    def __init__(self, engine: Engine, *, ttl: float = 2.0, max_entries: int = 10_000):
        super().__init__(engine, ttl=ttl, max_entries=max_entries)
        self._inflight: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Task]] = {}

    async def lookup(self, write_key: str) -> Source | None:
        if len(write_key) > MAX_KEY_LENGTH:
            return None
        hit, source = self.cached(write_key)
        if hit:
            return source
        # Single flight: when an entry expires under load, the many requests that notice at once
        # share one database read instead of each queueing its own in the thread pool.
        loop = asyncio.get_running_loop()
        flight = self._inflight.get(write_key)
        if flight is None or flight[0] is not loop:
            task = loop.create_task(run_in_threadpool(self._load, write_key))
            flight = self._inflight[write_key] = (loop, task)
            task.add_done_callback(lambda _, key=write_key, ours=flight: self._land(key, ours))  # type: ignore[misc]
        return await asyncio.shield(flight[1])

    def _land(self, write_key: str, flight) -> None:
        if self._inflight.get(write_key) is flight:
            del self._inflight[write_key]

    def _load(self, write_key: str) -> Source | None:
        generation = self._generation
        row = workspace.source_by_write_key(self.engine, write_key)
        return self._keep(write_key, generation, None if row is None else Source(row["id"], row["enabled"]))

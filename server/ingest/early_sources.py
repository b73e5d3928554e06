"""Write key → what the collector needs to expand the snippet's early send, read once per change.

The snippet's compact early send (server/ingest/early.py) leaves the library name and version and
the device-mode destination marks to the server. They come from the source's current settings
(``server.api.early_send.early_facts``, the rule the snippet was rendered by), read from the store
on the first early send for a key and then kept ``ttl`` seconds; a settings change in this process
drops the entry at once through ``notify.SETTINGS`` (other processes: scale-out's change bus or the
TTL). Only ``/e`` uses this: the other Tracking API routes never read a source's destinations.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.api.early_send import Facts, early_facts
from server.catalog import Catalog
from server.store import notify, workspace


class EarlySources:
    def __init__(self, engine: Engine, catalog: Catalog, *, ttl: float = 2.0, max_entries: int = 10_000):
        self.engine, self.catalog, self.ttl, self.max_entries = engine, catalog, ttl, max_entries
        self._entries: dict[str, tuple[float, Facts | None]] = {}
        self._generation = 0  # bumped by every invalidation: a read that raced one is not kept
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None

    def subscribe(self) -> None:
        self._unsubscribe = notify.SETTINGS.subscribe(self.invalidate)

    def close(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None

    def invalidate(self, source_id: int, write_key: str, version: int) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(write_key, None)

    async def facts(self, write_key: str) -> Facts | None:
        """The source's early-send facts, or None when its events must wait for the bundle."""
        entry = self._entries.get(write_key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return await run_in_threadpool(self._load, write_key)

    def _load(self, write_key: str) -> Facts | None:
        generation = self._generation
        facts = early_facts(self.catalog, workspace.public_config(self.engine, write_key))
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()  # bounded; the keys sending early sends come back at once
                self._entries[write_key] = (time.monotonic() + self.ttl, facts)
        return facts

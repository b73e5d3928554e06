"""When to build: a bounded cache of built bundles keyed by (write_key, settings_version).

- Warm path: no I/O at all. A key's current version is re-checked against the store at most
  every ``recheck`` seconds (the cheap cross-process freshness check: another server process may
  have changed the settings); PostgreSQL LISTEN/NOTIFY can call ``invalidate`` for instant updates.
- In this process, ``notify.SETTINGS`` (the change bus) calls ``invalidate`` right after the admin
  change commits, so the next request after an admin API call returns already sees the new version.
- Concurrent misses for one key share one build (single flight): 50 cold requests, one build.
- Unknown and disabled keys are remembered for ``recheck`` seconds too (a flood of bogus keys
  cannot turn into a flood of queries).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import LRUCache, TTLCache
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.cdn.bundles import Built, build_bundle, with_best_brotli
from server.catalog import Catalog
from server.config import Config
from server.cdn.settings_document import settings_document
from server.store import notify, workspace

log = logging.getLogger("switchboard.bundles")
PINNED_HISTORY = 10  # versions an immutable URL may be rebuilt from


@dataclass(frozen=True)
class Entry:
    """One source at one settings version: its bundle and its Segment settings document."""

    bundle: Built
    settings: bytes
    source_id: int = 0


@dataclass(frozen=True)
class Missing:
    reason: str  # "unknown" | "disabled"


class BundleCache:
    def __init__(self, engine: Engine, catalog: Catalog, config: Config, *, maxsize: int = 2048, recheck: float = 1.0):
        self.engine, self.catalog, self.config, self.recheck = engine, catalog, config, recheck
        self._entries: LRUCache = LRUCache(maxsize)          # (write_key, version) -> Entry
        # write_key -> (version | Missing, checked_at, Entry | None): the warm path is this one lookup.
        self._current: LRUCache = LRUCache(maxsize * 4)
        self._generation: dict[str, int] = {}
        self._unmatched: TTLCache = TTLCache(maxsize=4096, ttl=60)
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future] = {}
        self.builds = 0
        # One background thread recompresses fresh builds with the best brotli quality.
        self._polisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-brotli")
        self._unsubscribe = notify.SETTINGS.subscribe(self._on_change)

    def close(self) -> None:
        self._unsubscribe()
        self._polisher.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------- invalidation

    def _on_change(self, source_id: int, write_key: str, version: int) -> None:
        self.invalidate(write_key)

    def invalidate(self, write_key: str) -> None:
        """Forget what we know about ``write_key``'s current version (thread-safe)."""
        with self._lock:
            self._current.pop(write_key, None)
            self._generation[write_key] = self._generation.get(write_key, 0) + 1

    # -------------------------------------------------------------- lookups

    async def get(self, write_key: str) -> Entry | Missing:
        with self._lock:  # cachetools reorders on read; builder threads write
            known = self._current.get(write_key)
        if known is not None and time.monotonic() - known[1] < self.recheck:
            return known[2] or known[0]
        try:
            return await self._single_flight(write_key)
        except Exception:
            if known is None or known[2] is None:
                raise
            # The store is unreachable: keep serving the last version we built (stale-if-error).
            log.warning("settings check for a bundle failed; serving version %s", known[0], exc_info=True)
            return known[2]

    def find_hash(self, write_key: str, digest: str) -> Entry | None:
        """A cached version of ``write_key`` whose bundle hash is ``digest`` (immutable URLs)."""
        with self._lock:
            for (key, _), entry in list(self._entries.items()):
                if key == write_key and entry.bundle.hash == digest:
                    return entry
        return None

    async def pinned(self, write_key: str, source_id: int, digest: str) -> Entry | None:
        """The version behind an immutable URL: from the cache, else rebuilt from the last
        ``PINNED_HISTORY`` versions in the store (after a restart or an eviction). A digest that
        matches none is remembered for a minute, so random hashes cannot make us rebuild."""
        entry = self.find_hash(write_key, digest)
        if entry is not None or (write_key, digest) in self._unmatched:
            return entry
        entry = await run_in_threadpool(self._rebuild_pinned, write_key, source_id, digest)
        if entry is None:
            self._unmatched[(write_key, digest)] = True
        return entry

    def _rebuild_pinned(self, write_key: str, source_id: int, digest: str) -> Entry | None:
        for row in workspace.list_versions(self.engine, source_id)[:PINNED_HISTORY]:
            content = workspace.get_version(self.engine, source_id, row["version"])["content"]
            source = {"source_id": source_id, "write_key": write_key, "enabled": True,
                      "settings_version": row["version"], "destinations": content["destinations"]}
            key = (write_key, row["version"])
            with self._lock:
                entry = self._entries.get(key)
            if entry is None:
                entry = self._build(source)
                with self._lock:
                    self._entries[key] = entry
            if entry.bundle.hash == digest:
                return entry
        return None

    async def _single_flight(self, write_key: str) -> Entry | Missing:
        pending = self._inflight.get(write_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._inflight[write_key] = future
        try:
            result = await run_in_threadpool(self._load, write_key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            del self._inflight[write_key]
        future.set_result(result)
        return result

    def _load(self, write_key: str) -> Entry | Missing:
        """Runs in a worker thread: read the current version, build it if not cached."""
        generation = self._generation.get(write_key, 0)
        source = workspace.public_config(self.engine, write_key)
        state: Any  # the version, or Missing
        result: Any  # Entry | Missing
        if source is None:
            result = state = Missing("unknown")
        elif not source["enabled"]:
            result = state = Missing("disabled")
        else:
            state = source["settings_version"]
            with self._lock:
                result = self._entries.get((write_key, state))
            if result is None:
                result = self._build(source)
                with self._lock:
                    self._entries[(write_key, state)] = result
                self._polisher.submit(self._polish, (write_key, state))
        with self._lock:
            # A change announced while we were reading: do not pin the old version.
            if self._generation.get(write_key, 0) == generation:
                self._current[write_key] = (state, time.monotonic(), None if isinstance(result, Missing) else result)
        return result

    def _polish(self, key: tuple[str, int]) -> None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return
        better = dataclasses.replace(entry, bundle=with_best_brotli(entry.bundle))
        with self._lock:
            if key in self._entries:
                self._entries[key] = better
            known = self._current.get(key[0])
            if known is not None and known[0] == key[1]:
                self._current[key[0]] = (known[0], known[1], better)

    def _build(self, source: dict[str, Any]) -> Entry:
        self.builds += 1
        document = settings_document(self.config, self.catalog, source)
        return Entry(bundle=build_bundle(self.config, self.catalog, source), settings=orjson.dumps(document),
                     source_id=source["source_id"])

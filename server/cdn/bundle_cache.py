"""When to build: built bundles in memory, bounded by bytes, backed by the store.

- **Warm path, no I/O:** the key's current version comes from the in-memory directory
  (server/cdn/bundle_directory.py: fresh without a query per key), then one LRU lookup by
  (write_key, version). Nothing else, however many keys are served.
- **Bounded by bytes:** ``SWITCHBOARD_BUNDLE_CACHE_MB`` (default 128) over the encodings kept (gzip
  and brotli; identity is derived when asked) and the settings document; cachetools' ``LRUCache``
  with ``getsizeof`` evicts the least recently used versions. Unknown keys are not cached at all
  (the directory says they do not exist), so random keys cannot evict real ones.
- **Cheap misses:** each build is saved in the store (``bundle_builds``) per (source, version,
  build fingerprint). A miss after an eviction or a restart is one read by primary key; a render
  happens once per version per code change, cluster-wide.
- **Single flight, bounded:** concurrent misses for one key share one load (50 cold requests, one
  build), and at most ``BUILD_CONCURRENCY`` loads run at once, so a restart under traffic over
  thousands of keys leaves the event loop and the thread pool free for everything else.
- **Keeping** (server/cdn/bundle_keeping.py): builds are saved after the answer, and versions are
  polished (brotli quality 11, Zopfli's gzip): a new one right after its first build, busy ones
  as their warm requests offer them; both on background threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import LRUCache, TTLCache
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.cdn.bundle_directory import BULK_DIRTY, KEY_MAX, SYNC_SPACING, Directory, Known
from server.cdn.bundle_keeping import POLISH_SAMPLE, Keeper
from server.cdn.bundles import Built, build_bundle, build_fingerprint
from server.catalog import Catalog
from server.config import Config
from server.cdn.settings_document import settings_document
from server.cdn.snippet import early_send
from server.store import bundle_builds, workspace

log = logging.getLogger("switchboard.bundles")
PINNED_HISTORY = bundle_builds.KEEP_VERSIONS  # versions an immutable URL may be served from
BUILD_CONCURRENCY = 4
# The source's own settings a bundle depends on (context.library.name, server-set cookies): part of
# each version's snapshot (store/workspace.py), handed to the build with its destinations.
SOURCE_SETTINGS = ("library_name", "server_cookies")
# What an entry costs the process, not just its payload: ~800 bytes of Python objects around it
# (measured with tracemalloc), and the allocator's share under churn (evicted 8 KB blocks leave
# holes that new ones only partly fill). With these, RSS at 10,000 keys stays near the bound
# plus the process's own ~100 MB (bench/bundle.py prints it).
ENTRY_OVERHEAD = 800
ALLOCATOR_FACTOR = 1.25


@dataclass(frozen=True)
class Entry:
    """One source at one settings version: its bundle and its Segment settings document."""

    bundle: Built
    settings: bytes
    source_id: int = 0


@dataclass(frozen=True)
class Missing:
    reason: str  # "unknown" | "disabled"


UNKNOWN, DISABLED = Missing("unknown"), Missing("disabled")
EARLY_KEYS = 16384  # snippets' early-send data kept (a URL or None; one store read per key and version)
NOT_KNOWN = object()
LOOKUPS_PER_S = 10.0  # single-key reads for keys a just-begun directory check may have missed


def entry_size(entry: Entry) -> int:
    return int((entry.bundle.nbytes + len(entry.settings)) * ALLOCATOR_FACTOR) + ENTRY_OVERHEAD


class BundleCache:
    def __init__(self, engine: Engine, catalog: Catalog, config: Config, *, max_bytes: int | None = None,
                 poll_interval: float = 0.5):
        self.engine, self.catalog, self.config = engine, catalog, config
        self.max_bytes = max_bytes if max_bytes is not None else config.bundle_cache_mb * 1024 * 1024
        self.fingerprint = build_fingerprint(config, catalog)
        self.directory = Directory(engine, interval=poll_interval)
        self._entries: LRUCache = LRUCache(self.max_bytes, getsizeof=entry_size)  # (write_key, version) -> Entry
        self._unmatched: TTLCache = TTLCache(maxsize=4096, ttl=60)  # (known write_key, 16-hex digest)
        self._early: LRUCache = LRUCache(maxsize=EARLY_KEYS)  # (write_key, version) -> snippet early send
        self._lock = threading.Lock()  # cachetools reorders on read; loader threads write
        self._inflight: dict[str, asyncio.Future] = {}
        self._sync_pending: asyncio.Future | None = None
        self._lookups = (LOOKUPS_PER_S, 0.0)  # token bucket: (tokens, refilled at)
        self._gate: tuple[Any, asyncio.Semaphore] | None = None
        self.builds = 0  # renders (a persisted build read back is not one)
        self.reads = 0  # builds read back from the store
        self._served = 0
        self.keeper = Keeper(engine, self.fingerprint, self._peek, self._swap)

    def start(self) -> None:
        """Load the directory and start the freshness thread (the app's startup)."""
        try:
            self.directory.sync(force=True)
        except Exception:
            log.warning("could not read the source directory; keys are looked up one by one until it loads",
                        exc_info=True)
        self.directory.start()

    def close(self) -> None:
        self.directory.close()
        self.keeper.close()

    def flush(self) -> None:
        """Wait until every build made so far is saved."""
        self.keeper.flush()

    def invalidate(self, write_key: str) -> None:
        """Re-read ``write_key`` from the store before serving it again (thread-safe)."""
        self.directory.mark_dirty(write_key)

    @property
    def nbytes(self) -> int:
        return int(self._entries.currsize)

    # -------------------------------------------------------------- lookups

    async def get(self, write_key: str) -> Entry | Missing:
        directory = self.directory
        # No lock for these two reads: each is one atomic dict operation, and a key marked dirty
        # before this request began is seen as dirty (the GIL orders them).
        known = directory.keys.get(write_key)
        if known is not None and write_key not in directory.dirty:
            if not known.enabled:
                return DISABLED
            with self._lock:
                entry = self._entries.get((write_key, known.version))
            if entry is not None:
                self._served += 1
                if not self._served & (POLISH_SAMPLE - 1):
                    self.keeper.offer(write_key, entry)
                return entry
        elif known is None and directory.loaded and write_key not in directory.dirty:
            if len(write_key) > KEY_MAX or not await self._exists_after_sync(write_key):
                return UNKNOWN
        try:
            return await self._single_flight(write_key)
        except Exception:
            stale = self._stale(write_key)
            if stale is None:
                raise
            # The store is unreachable: keep serving the last version we have (stale-if-error).
            log.warning("settings check for a bundle failed; serving version %s", stale.bundle.version, exc_info=True)
            return stale

    def _stale(self, write_key: str) -> Entry | None:
        known = self.directory.keys.get(write_key)
        if known is None:
            return None
        with self._lock:
            return self._entries.get((write_key, known.version))

    async def _exists_after_sync(self, write_key: str) -> bool:
        """Whether the key exists once the directory is at most SYNC_SPACING old (one sequence
        check shared by every request for an unknown key meanwhile).

        A check that began before this request arrived can miss a source committed in another
        process a moment ago (the request would get a 404 for a key that exists): then the key
        is looked up by itself, within a small budget (``LOOKUPS_PER_S``) so that a flood of
        random keys still costs a few queries a second, not one each."""
        arrived = time.monotonic()
        if arrived - self.directory.synced_at > SYNC_SPACING:
            pending = self._sync_pending
            if pending is None:
                pending = self._sync_pending = asyncio.ensure_future(run_in_threadpool(self.directory.sync))
                pending.add_done_callback(lambda _: setattr(self, "_sync_pending", None))
            await asyncio.shield(pending)
        if write_key in self.directory.keys or write_key in self.directory.dirty:
            return True
        if self.directory.fresh_as_of >= arrived or not self._lookup_allowed(arrived):
            return False
        return await run_in_threadpool(self.directory.resolve, write_key) is not None

    def _lookup_allowed(self, now: float) -> bool:
        tokens, at = self._lookups
        tokens = min(LOOKUPS_PER_S, tokens + (now - at) * LOOKUPS_PER_S)
        allowed = tokens >= 1
        self._lookups = (tokens - 1 if allowed else tokens, now)
        return allowed

    async def pinned(self, write_key: str, source_id: int, digest: str) -> Entry | None:
        """The version behind an immutable URL: from memory, else the store's kept builds, else
        rebuilt from the last ``PINNED_HISTORY`` versions. A digest that matches none is
        remembered for a minute, so random hashes cannot make us rebuild."""
        known = self.directory.keys.get(write_key)
        if known is not None:
            with self._lock:  # the last few versions: no index to keep
                for version in range(known.version, max(0, known.version - PINNED_HISTORY), -1):
                    entry = self._entries.get((write_key, version))
                    if entry is not None and entry.bundle.hash == digest:
                        return entry
        if (write_key, digest) in self._unmatched:
            return None
        entry = await self._gated(self._load_pinned, write_key, source_id, digest)
        if entry is None:
            self._unmatched[(write_key, digest)] = True
        return entry

    # -------------------------------------------------------------- misses

    async def _gated(self, fn, *args):
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate[0] is not loop:
            self._gate = (loop, asyncio.Semaphore(BUILD_CONCURRENCY))
        async with self._gate[1]:
            return await run_in_threadpool(fn, *args)

    async def _single_flight(self, write_key: str) -> Entry | Missing:
        pending = self._inflight.get(write_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._inflight[write_key] = future
        try:
            result = await self._gated(self._load, write_key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            del self._inflight[write_key]
        future.set_result(result)
        return result

    def _load(self, write_key: str) -> Entry | Missing:
        """In a worker thread: the key's current version from memory, the store's kept build, or
        a fresh build (saved for next time)."""
        directory = self.directory
        with directory.lock:
            known = directory.keys.get(write_key)
            trusted = known is not None and write_key not in directory.dirty
        content = None
        if not trusted and len(directory.dirty) > BULK_DIRTY:
            directory.settle()
            with directory.lock:
                known = directory.keys.get(write_key)
                trusted = write_key not in directory.dirty
            if trusted and known is None:
                return UNKNOWN
        if not trusted:
            source = directory.resolve(write_key)
            if source is None:
                return UNKNOWN
            known = Known(source["source_id"], source["settings_version"], source["enabled"])
            content = {"destinations": source["destinations"], "source": {k: source.get(k) for k in SOURCE_SETTINGS}}
        if not known.enabled:
            return DISABLED
        return self._entry(write_key, known, content) or UNKNOWN

    def current(self, write_key: str, known: Known) -> Entry | None:
        """``write_key`` at ``known``'s version, built or read back like a miss (the static
        publisher, server/cdn/publish.py); None if the version is gone."""
        return self._entry(write_key, known, None)

    def _entry(self, write_key: str, known: Known, content: dict | None) -> Entry | None:
        """``content``: the version's snapshot ({"destinations", "source"}) when already read."""
        key = (write_key, known.version)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            return entry
        row = bundle_builds.load(self.engine, known.source_id, known.version, self.fingerprint)
        if row is not None:
            self.reads += 1
            entry = _entry_from_row(row, known.source_id)
        else:
            if content is None:
                try:
                    content = workspace.get_version(self.engine, known.source_id, known.version)["content"]
                except workspace.NotFound:  # deleted meanwhile
                    return None
            source = {"source_id": known.source_id, "write_key": write_key, "enabled": True,
                      "settings_version": known.version, "destinations": content["destinations"],
                      **{k: (content.get("source") or {}).get(k) for k in SOURCE_SETTINGS}}
            entry = self._build(source)
        self._keep(write_key, entry)
        if not entry.bundle.polished:  # new (or read back unpolished): its next visitors get smaller bytes
            self.keeper.offer(write_key, entry)
        return entry

    def _keep(self, write_key: str, entry: Entry) -> None:
        if entry_size(entry) > self.max_bytes:  # cachetools would refuse it: serve it uncached
            return
        with self._lock:
            self._entries[(write_key, entry.bundle.version)] = entry

    def _load_pinned(self, write_key: str, source_id: int, digest: str) -> Entry | None:
        row = bundle_builds.find_hash(self.engine, source_id, digest, self.fingerprint)
        if row is not None:
            self.reads += 1
            entry = _entry_from_row(row, source_id)
            self._keep(write_key, entry)
            return entry
        for version in workspace.list_versions(self.engine, source_id)[:PINNED_HISTORY]:
            entry = self._entry(write_key, Known(source_id, version["version"], True), None)
            if entry is not None and entry.bundle.hash == digest:
                return entry
        return None

    def known_early(self, write_key: str, version: int) -> Any:
        """The snippet's early-send data for this settings version if already read, else
        ``NOT_KNOWN`` (then ``snippet_early`` from a thread): a warm snippet request reads nothing."""
        with self._lock:
            return self._early.get((write_key, version), NOT_KNOWN)

    def snippet_early(self, write_key: str, version: int) -> str | None:
        """What the snippet needs to send the first events itself at this settings version
        (``server/cdn/snippet.early_send``), read from the store once per key and version, for the
        snippet route and the static publish alike. Reads the store: call it from a thread."""
        known = self.known_early(write_key, version)
        if known is not NOT_KNOWN:
            return known
        source = workspace.public_config(self.engine, write_key)
        early = early_send(self.config, self.catalog, source)
        if source is not None and source["settings_version"] == version:  # a newer one is not this version's
            with self._lock:
                self._early[(write_key, version)] = early
        return early

    def _build(self, source: dict[str, Any]) -> Entry:
        self.builds += 1
        document = orjson.dumps(settings_document(self.config, self.catalog, source))
        built = build_bundle(self.config, self.catalog, source)
        entry = Entry(bundle=built, settings=document, source_id=source["source_id"])
        self.keeper.save(entry)
        return entry

    def _peek(self, key: tuple[str, int]) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def _swap(self, key: tuple[str, int], entry: Entry) -> None:
        with self._lock:
            if key in self._entries:
                self._entries[key] = entry


def _entry_from_row(row: dict[str, Any], source_id: int) -> Entry:
    built = Built(gzip=row["gzip"], br=row["br"], hash=row["hash"], size=row["size"], version=row["version"],
                  loaders=row["loaders"], br_quality=row["br_quality"], built_at=row["built_at"])
    return Entry(bundle=built, settings=row["settings"], source_id=source_id)

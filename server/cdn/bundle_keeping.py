"""Keeping built bundles: each build saved to the store after its answer has gone, and the
versions that are actually served polished (brotli quality 11 and Zopfli's gzip: ``bundles.polish``).

Both run on background threads of their own, so that neither a write transaction (an fsync on
SQLite) nor the ~100 ms of CPU that polishing takes sits on a request's path:

- **Saving.** One thread, in order. Past ``SAVE_BACKLOG`` waiting saves (a restart under traffic
  over thousands of keys), the miss saves its build itself: backpressure instead of an unbounded
  queue of bundles in memory.
- **Polishing.** A build compresses brotli at quality 5 and gzip with zlib -9 (a few ms). A new
  build offers itself at once (a settings change is polished within a moment of its first
  request), and one warm request in ``POLISH_SAMPLE`` offers its bundle; at most one is
  re-compressed per ``POLISH_SPACING`` seconds, so the CPU spent on it stays bounded (a restart
  that builds thousands of versions polishes one a second; warm requests offer the rest). The
  result is saved, so each version is polished once, cluster-wide.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sqlalchemy import Engine

from server.cdn.bundles import polish
from server.store import bundle_builds

log = logging.getLogger("switchboard.bundles")
SAVE_BACKLOG = 256
POLISH_SAMPLE = 256  # a power of two: the warm path tests it with a mask
POLISH_SPACING = 1.0


class Keeper:
    def __init__(self, engine: Engine, fingerprint: str, lookup: Callable[[tuple], Any],
                 replace: Callable[[tuple, Any], None]):
        self.engine, self.fingerprint = engine, fingerprint
        self._lookup, self._replace = lookup, replace  # the cache's entries, under its lock
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-save")
        self._polisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-brotli")
        self._lock = threading.Lock()
        self._unsaved = 0
        self._polished_at = 0.0

    def close(self) -> None:
        self._polisher.shutdown(wait=False, cancel_futures=True)
        self._saver.shutdown(wait=True)  # builds made before a shutdown are there after the restart

    # -------------------------------------------------------------- saving

    def save(self, entry) -> None:
        with self._lock:
            self._unsaved += 1
            later = self._unsaved <= SAVE_BACKLOG
        if later:
            self._saver.submit(self._save, entry)
        else:
            self._save(entry)

    def flush(self) -> None:
        """Wait until every build handed over so far is saved."""
        self._saver.submit(lambda: None).result()

    def _save(self, entry) -> None:
        built = entry.bundle
        try:
            bundle_builds.save(self.engine, entry.source_id, built.version, self.fingerprint, {
                "hash": built.hash, "size": built.size, "gzip": built.gzip, "br": built.br,
                "br_quality": built.br_quality, "loaders": built.loaders, "settings": entry.settings,
                "built_at": built.built_at})
        except Exception:  # serving matters more than keeping: the next miss rebuilds
            log.warning("could not save a bundle build", exc_info=True)
        finally:
            with self._lock:
                self._unsaved -= 1

    # -------------------------------------------------------------- polishing

    def offer(self, write_key: str, entry) -> None:
        """A sampled warm request's bundle: polish it unless done or another one was just now."""
        now = time.monotonic()
        if entry.bundle.polished or now - self._polished_at < POLISH_SPACING:
            return
        self._polished_at = now
        self._polisher.submit(self._polish, (write_key, entry.bundle.version))

    def _polish(self, key: tuple[str, int]) -> None:
        entry = self._lookup(key)
        if entry is not None:
            self.polished(key, entry)

    def polished(self, key: tuple[str, int], entry):
        """``entry`` polished, in the cache (if still there) and the store: each version is
        polished once, cluster-wide. Runs on the calling thread (the polisher's, the publisher's)."""
        if entry.bundle.polished:
            return entry
        better = dataclasses.replace(entry, bundle=polish(entry.bundle))
        built = better.bundle
        # Stored first, then served: the build's own save (queued on the saver just before a new
        # build is offered) must be in the store to be updated, and a process that starts after
        # this one served the polished bytes finds them there.
        try:
            self.flush()
            bundle_builds.polish(self.engine, entry.source_id, key[1], self.fingerprint, built.gzip, built.br,
                                 built.br_quality)
        except Exception:
            log.warning("could not save a polished bundle", exc_info=True)
        self._replace(key, better)
        return better

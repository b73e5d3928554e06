"""Which write keys exist, at which settings version: known in memory, fresh without a query per key.

Every server process keeps the whole directory (write_key -> source id, version, enabled; ~100
bytes a source). It stays fresh three ways:

- **This process** changed a source: ``notify.SETTINGS`` (the change bus) marks the key *dirty* right
  after the commit; its next request asks the store (one indexed query) before trusting anything.
- **PostgreSQL** LISTEN/NOTIFY (server/scaleout.py) reaches the same listener within milliseconds.
- **Any other process** (several on one SQLite file, or a missed notification): a background
  thread reads the one-row ``settings_sequence`` every ``interval`` (0.5 s). Only when it moved is
  the directory re-read, in one query. That is one tiny query per interval per process, whatever
  the number of keys, and a change reaches every process within about ``interval``.

A warm request therefore does no I/O at all, and an unknown key costs no memory: it is simply
not in the directory. So that a key created a moment ago in another process is not refused, a
request for a key we do not know first checks the sequence (``sync``), at most every
``SYNC_SPACING`` seconds for all such requests together: a flood of random keys costs a few tiny
queries a second and evicts nothing.

Races: a full re-read and a per-key read that resolves a dirty key take ``_read_lock`` for their
read-and-apply, so neither can overwrite the other with an older answer; a change announced while
a read is in flight keeps its key dirty (stamps).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, NamedTuple

from sqlalchemy import Engine

from server.store import bundle_builds, notify, workspace

log = logging.getLogger("switchboard.bundles")
SYNC_SPACING = 0.1  # s between sequence checks triggered by unknown keys
KEY_MAX = 64  # sources.write_key is String(64): a longer key cannot exist
BULK_DIRTY = 64  # more dirty keys than this: re-read the whole directory once


class Known(NamedTuple):
    source_id: int
    version: int
    enabled: bool


class Directory:
    def __init__(self, engine: Engine, *, interval: float = 0.5):
        self.engine, self.interval = engine, interval
        self.keys: dict[str, Known] = {}
        self.dirty: dict[str, int] = {}  # write_key -> stamp of the change not yet read back
        self.loaded = False
        self.lock = threading.Lock()  # guards keys/dirty/stamp (held for dict operations only)
        self._read_lock = threading.Lock()  # one store read-and-apply at a time
        self._stamp = 0
        self._seq: int | None = None
        self.synced_at = 0.0  # monotonic time of the last successful sequence check
        # When that check began: everything committed before this moment is in ``keys``.
        self.fresh_as_of = 0.0
        self.polls = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        ref = weakref.WeakMethod(self._on_change)
        self._unsubscribe = notify.SETTINGS.subscribe(lambda *change: (m := ref()) and m(*change))

    # -------------------------------------------------------------- changes we are told about

    def _on_change(self, source_id: int, write_key: str, version: int) -> None:
        self.mark_dirty(write_key)

    def mark_dirty(self, write_key: str) -> None:
        with self.lock:
            self._stamp += 1
            self.dirty[write_key] = self._stamp

    # -------------------------------------------------------------- the periodic check

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=_poll_loop, args=(weakref.ref(self), self._stop, self.interval),
                                            name="bundle-freshness", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._unsubscribe()
        self._stop.set()

    def sync(self, *, force: bool = False) -> bool:
        """Check the sequence; re-read the directory if it moved. True if something changed."""
        with self._read_lock:
            return self._sync(force)

    def settle(self) -> None:
        """Many keys marked at once (PostgreSQL's resync after a reconnect announces every source):
        one full read clears them all, instead of a query per key."""
        with self._read_lock:
            if len(self.dirty) > BULK_DIRTY:
                self._sync(True)

    def _sync(self, force: bool) -> bool:
        began = time.monotonic()
        seq = bundle_builds.read_sequence(self.engine)
        self.synced_at = time.monotonic()
        self.polls += 1
        if seq == self._seq and self.loaded and not force:
            self.fresh_as_of = began
            return False
        with self.lock:
            start = self._stamp
        rows = bundle_builds.directory(self.engine)
        fresh = {key: Known(source_id, version, enabled) for key, source_id, version, enabled in rows}
        with self.lock:
            # Changes announced before the read began are in it; later ones stay dirty.
            self.dirty = {key: stamp for key, stamp in self.dirty.items() if stamp > start}
            self.keys, self._seq, self.loaded = fresh, seq, True
        self.fresh_as_of = began
        return True

    # -------------------------------------------------------------- one key

    def resolve(self, write_key: str) -> dict[str, Any] | None:
        """Read ``write_key``'s current settings from the store (a dirty or not-yet-loaded key) and
        remember the answer unless a newer change arrived meanwhile. None: no such source."""
        with self._read_lock:
            with self.lock:
                stamp = self.dirty.get(write_key)
            source = workspace.public_config(self.engine, write_key)
            with self.lock:
                if self.dirty.get(write_key) == stamp:
                    self.dirty.pop(write_key, None)
                    if source is None:
                        self.keys.pop(write_key, None)
                    else:
                        self.keys[write_key] = Known(source["source_id"], source["settings_version"], source["enabled"])
        return source


def _poll_loop(ref: "weakref.ref[Directory]", stop: threading.Event, interval: float) -> None:
    """The background check. Holds the directory only weakly: an app dropped without its
    shutdown (tests) does not keep a thread polling its database forever."""
    failures = 0
    while not stop.wait(interval):
        directory = ref()
        if directory is None:
            return
        try:
            directory.sync()
            failures = 0
        except Exception:
            failures += 1
            if failures in (1, 10) or failures % 600 == 0:  # not a line every 0.5 s while the store is down
                log.warning("bundle freshness check failed (%d in a row); serving what is cached", failures,
                            exc_info=failures == 1)
        del directory

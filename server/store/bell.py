"""The change bus across processes on one SQLite file: a bell directory beside the database.

PostgreSQL carries the bus's announcements between processes with LISTEN/NOTIFY; SQLite has
nothing of the kind. Yet several processes may share one SQLite file (``switchboard serve``
beside a ``switchboard worker``, ``serve --workers N``), and the workers sleep until they are
told of new events or jobs instead of polling the database. So each process that commits a
change *rings*: it bumps the modification time of its own file ``<database>-bell/<pid>.<channel>``
(one ``utime`` call, no write to the database). A watcher thread in every process looks at the
directory's other files every ``WATCH_S`` and, for each that changed, delivers the channel's
change with the payload "0" ("something changed: read the store").

Why files per process: a process never hears its own rings (it told its subscribers already,
right after its commit), and two processes ringing at once never hide each other's ring. The
watcher reads only directory entries — no database query, so an idle server stays idle.

A command of the CLI changes the store and exits: it rings without watching (``ring_only``), on
one file per channel shared by every such command (``cli.<channel>``), so that a destination
added with ``switchboard destinations add`` reaches a running server's workers at once (they
would otherwise find it at their 30 s safety poll) and no command leaves a file of its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine

log = logging.getLogger("switchboard.notify")

WATCH_S = 0.05
CLI_PREFIX = "cli."  # the one file per channel that every CLI command rings

_active: "Bell | None" = None


def ring(channel: str) -> None:
    """Tell the other processes on this SQLite file that ``channel`` changed (no-op when no bell
    runs in this process, e.g. on PostgreSQL, where NOTIFY does it)."""
    bell = _active
    if bell is not None:
        bell.ring(channel)


def database_file(engine: Engine) -> str | None:
    """The SQLite file whose processes a bell joins, or None (PostgreSQL, an in-memory database)."""
    database = engine.url.database
    return database if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:") else None


def ring_only(engine: Engine) -> None:
    """Let this short-lived process (a CLI command) ring the bells of the other processes on
    ``engine``'s SQLite file; a bell this process starts later (``notify.listen``) replaces it.
    The directory is made at the first ring: a command that changes nothing leaves no trace."""
    global _active
    database = database_file(engine)
    if database is None or (_active is not None and _active._thread is not None):
        return  # not an SQLite file, or this process's watching bell rings already
    _active = Bell(database, (), lambda channel: None, prefix=CLI_PREFIX)


class Bell:
    """Ring and watch ``<database>-bell``; ``deliver(channel)`` is called for other processes' rings."""

    def __init__(self, database: str, channels: tuple[str, ...], deliver: Callable[[str], None],
                 prefix: str | None = None):
        self.directory = Path(f"{database}-bell")
        self.channels = set(channels)
        self.deliver = deliver
        self.prefix = prefix or f"{os.getpid()}."
        self._seen: dict[str, int] = {}
        self._last_ring = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Bell":
        global _active
        self.directory.mkdir(parents=True, exist_ok=True)
        self._scan(report=False)  # what rang before we started is not news
        _active = self
        self._thread = threading.Thread(target=self._run, name="switchboard-bell", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        global _active
        if _active is self:
            _active = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for channel in self.channels:
            try:
                (self.directory / f"{self.prefix}{channel}").unlink()
            except OSError:
                pass

    def ring(self, channel: str) -> None:
        path = self.directory / f"{self.prefix}{channel}"
        # A stamp of our own, one more each time: two rings within the clock's granularity
        # would otherwise leave the same mtime, and the second would go unheard.
        self._last_ring = stamp = max(time.time_ns(), self._last_ring + 1)
        try:
            try:
                os.utime(path, ns=(stamp, stamp))
            except FileNotFoundError:
                self.directory.mkdir(exist_ok=True)  # a CLI command's first ring (beside its database)
                path.touch()
                os.utime(path, ns=(stamp, stamp))
        except OSError:  # a full or read-only disk must not fail the commit that rang
            log.warning("could not ring %s", path, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(WATCH_S):
            try:
                self._scan(report=True)
            except OSError:
                log.warning("could not read %s", self.directory, exc_info=True)

    def _scan(self, report: bool) -> None:
        changed: set[str] = set()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(self.prefix):
                    continue
                channel = entry.name.partition(".")[2]
                if channel not in self.channels:
                    continue
                try:
                    stamp = entry.stat().st_mtime_ns
                except OSError:
                    continue
                if self._seen.get(entry.name) != stamp:
                    self._seen[entry.name] = stamp
                    changed.add(channel)
        if report:
            for channel in changed:
                self.deliver(channel)

"""Worker heartbeats and lease takeover: a worker killed with -9 holds up its jobs for seconds, not
for the length of its leases.

Each ``DeliveryService`` runs one ``Heartbeat``: a thread (so that a busy event loop does not
make a live worker look dead) that every ``interval`` seconds bumps this worker's counter in
``delivery_workers`` and looks at everyone else's (``server/store/workers.py``). A worker is
taken for dead, and its leases are freed at once, when

- it ran on this machine, in this pid namespace, and its process is gone (``/proc``; its start
  time tells a reused pid apart) — a restarted ``switchboard worker`` or ``serve`` takes over
  its predecessor's jobs as soon as it starts; or
- its counter has not moved for ``stale_after`` seconds by *our* clock (no comparison of two
  machines' clocks) — the survivor of two workers takes over the other's jobs a few seconds
  after it died.

A worker wrongly taken for dead (stalled for longer than ``stale_after``) loses nothing: its
late results are not applied (they check the lease owner) and the jobs are sent again, with the
same idempotency key, and counted in ``delivery_jobs.takeovers``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from sqlalchemy import Engine

from server.store import workers as store

log = logging.getLogger("switchboard.delivery")

# Every beat is a write (and on SQLite an fsync): every 2 s keeps an idle worker's cost to one
# small transaction and one read each 2 s, and still takes a dead worker over within seconds.
HEARTBEAT_S = 2.0
STALE_AFTER_S = 10.0


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def host_key() -> str:
    """What makes a pid meaningful: this kernel's boot id and our pid namespace ("" off Linux)."""
    boot = _read("/proc/sys/kernel/random/boot_id").strip()
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}:{namespace}" if boot else ""


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot), or None if no live process has it."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "(command name)", which may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie is dead, only not yet reaped
        return None
    return fields[19]


def identity() -> dict:
    pid = os.getpid()
    return {"host_key": host_key(), "pid": pid, "pid_start": process_start(pid) or ""}


class Heartbeat:
    def __init__(self, engine: Engine, owner: str, on_takeover: Callable[[int], None], *,
                 interval: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S):
        self.engine, self.owner, self.on_takeover = engine, owner, on_takeover
        self.interval, self.stale_after = interval, stale_after
        self.identity = identity()
        self._seen: dict[str, tuple[int, float]] = {}  # owner -> (beat, when we saw it change)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self.tick()  # at once: a restarted worker takes over its dead predecessor's jobs before claiming
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)
        try:
            store.forget(self.engine, self.owner)
        except Exception:
            log.exception("removing the heartbeat of %s failed; others will take it for dead", self.owner)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # the database may be away for a while: beat again next time
                log.exception("delivery heartbeat failed")

    def tick(self) -> None:
        store.beat(self.engine, self.owner, self.identity)
        for owner in self.dead(store.workers(self.engine)):
            freed = store.take_over(self.engine, owner)
            self._seen.pop(owner, None)
            log.warning("delivery worker %s stopped heart-beating; took over its %d leased job(s)", owner, freed)
            if freed:
                self.on_takeover(freed)

    def dead(self, rows: list[dict]) -> list[str]:
        now = time.monotonic()
        found: list[str] = []
        present = set()
        for row in rows:
            owner = row["owner"]
            present.add(owner)
            if owner == self.owner:
                continue
            if self._gone_here(row):
                found.append(owner)
                continue
            seen = self._seen.get(owner)
            if seen is None or seen[0] != row["beat"]:
                self._seen[owner] = (row["beat"], now)
            elif now - seen[1] > self.stale_after:
                found.append(owner)
        for owner in set(self._seen) - present:
            del self._seen[owner]
        return found

    def _gone_here(self, row: dict) -> bool:
        """Its process ran where our pids mean the same, and it no longer runs."""
        key = self.identity["host_key"]
        if not key or row["host_key"] != key or not row["pid_start"]:
            return False
        return process_start(row["pid"]) != row["pid_start"]

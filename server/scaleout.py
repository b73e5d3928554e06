"""Scale-out glue: what one process learns from the others through PostgreSQL.

Many ``switchboard serve`` and ``switchboard worker`` processes may share one PostgreSQL. This
plane has no routes; its startup runs one ``NotifyListener`` per server process (a worker runs
its own, see server/delivery/commands.py) that skips the process's own notifications, and
bridges:

- ``switchboard_settings`` → ``workspace.announce_remote``: the very path that local settings
  changes take, so the bundle cache (and anything else subscribed with
  ``workspace.on_settings_change``) forgets a changed source within milliseconds of the commit
  in another process.
- ``switchboard_events`` → ``events.announce_appended``: delivery workers wake up as soon as
  any server has committed new events, instead of waiting for their next poll.

Notifications are lost while the listener is disconnected, so after each reconnection every
source is announced at its current version and the workers are woken once (the cheap
version check). On SQLite this plane does nothing: several processes on one SQLite file
(``serve --workers N``) rely on the bundle cache's settings-sequence check (server/bundle_directory.py).
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from server.store import events, workspace
from server.store.engine import read_only
from server.store.notify import EVENTS_CHANNEL, SETTINGS_CHANNEL, NotifyListener
from server.store.schema import sources

log = logging.getLogger("switchboard.scaleout")

CONNECT_WAIT_S = 5.0


def routes(config) -> list:
    return []


def parse_settings_payload(payload: str) -> tuple[int, str, int] | None:
    """'source_id:write_key:version' → (source_id, write_key, version); None if malformed.

    Split from both ends, so a write key is never cut even if it ever held a colon."""
    head, sep, rest = payload.partition(":")
    key, sep2, version = rest.rpartition(":")
    try:
        return (int(head), key, int(version)) if sep and sep2 and key else None
    except ValueError:
        return None


class Bridge:
    """Turns notifications from other processes into this process's in-process announcements."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def settings_changed(self, payload: str) -> None:
        change = parse_settings_payload(payload)
        if change is None:
            log.warning("ignoring malformed %s payload %r", SETTINGS_CHANNEL, payload)
            return
        workspace.announce_remote(*change)

    def events_appended(self, payload: str) -> None:
        events.announce_appended(payload)

    def resync(self) -> None:
        """After a reconnection: announce every source at its current version, wake the workers."""
        with read_only(self.engine) as conn:
            rows = conn.execute(select(sources.c.id, sources.c.write_key, sources.c.settings_version)).all()
        for row in rows:
            workspace.announce_remote(row.id, row.write_key, row.settings_version)
        events.announce_appended("")  # "read the log": there may be events we were not told of


async def startup(app: Starlette) -> None:
    listener = NotifyListener.for_engine(app.state.engine)
    app.state.notify_listener = listener
    if not listener.enabled:
        return
    bridge = Bridge(app.state.engine)
    listener.subscribe(SETTINGS_CHANNEL, bridge.settings_changed)
    listener.subscribe(EVENTS_CHANNEL, bridge.events_appended)
    listener.on_reconnect(bridge.resync)
    listener.start()
    if not await run_in_threadpool(listener.wait_connected, CONNECT_WAIT_S):
        # Not fatal: the listener keeps retrying, and the version check covers the gap.
        log.warning("notification listener not connected after %.0fs; still trying", CONNECT_WAIT_S)


async def shutdown(app: Starlette) -> None:
    listener: NotifyListener | None = getattr(app.state, "notify_listener", None)
    if listener is None:
        return
    await run_in_threadpool(listener.stop)

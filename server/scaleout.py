"""Scale-out glue: this process hears what the others change, through the change bus.

Many ``switchboard serve`` and ``switchboard worker`` processes may share one PostgreSQL. This
plane has no routes; its startup runs the bus's listener (``notify.listen``), which relays the
other processes' ``notify.SETTINGS`` and ``notify.EVENTS`` changes to this process's
subscribers, exactly as local changes reach them: the bundle and write-key caches forget a
changed source within milliseconds of the commit in another process, and delivery workers wake
as soon as any server has committed new events. After each reconnection every source is
announced at its current version and the event readers are woken once. On SQLite it runs the
bell instead (``server/store/bell.py``: events, jobs and suppressions between the processes on
one file, so that sleeping workers wake); settings rely on the bundle cache's once-a-second
version check. ``switchboard worker`` runs this same startup.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool

from server.store import notify
from server.store.notify import CONNECT_WAIT_S, NotifyListener, parse_settings_payload

log = logging.getLogger("switchboard.scaleout")

__all__ = ["routes", "startup", "shutdown", "parse_settings_payload"]


def routes(config) -> list:
    return []


async def startup(app) -> None:
    listener = notify.listen(app.state.engine)
    app.state.notify_listener = listener
    if listener.enabled and not await run_in_threadpool(listener.wait_connected, CONNECT_WAIT_S):
        # Not fatal: the listener keeps retrying, and the version check covers the gap.
        log.warning("notification listener not connected after %.0fs; still trying", CONNECT_WAIT_S)


async def shutdown(app) -> None:
    listener: NotifyListener | None = getattr(app.state, "notify_listener", None)
    if listener is None:
        return
    await run_in_threadpool(listener.stop)

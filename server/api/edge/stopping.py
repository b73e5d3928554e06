"""Long responses learn that the server is stopping, so they can end now.

On SIGTERM uvicorn stops accepting connections, then waits for every response in progress to
finish before it runs the app's shutdown; it tells the app nothing in between. A streaming
response (the web app's live debugger: 15 s per stream) therefore held a restart back by up to
its whole length, and an orchestrator's stop timeout could kill the process before the delivery
workers handed their leases back. uvicorn does call each open connection's ``shutdown()`` as the
wait begins: ``EdgeProtocol.shutdown`` calls ``stopping()`` here, which runs the callbacks that
long responses registered with ``when_stopping``, in the event loop of the server that is
stopping (a callback acts on that loop's responses only: tests run several servers in one
process).
"""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("switchboard.edge")

_callbacks: list[Callable[[], None]] = []


def when_stopping(callback: Callable[[], None]) -> None:
    """Run ``callback()`` in the server's event loop when the server starts to stop (maybe more
    than once: once per open connection; it must be cheap and idempotent)."""
    if callback not in _callbacks:
        _callbacks.append(callback)


def stopping() -> None:
    for callback in list(_callbacks):
        try:
            callback()
        except Exception:  # one broken callback must not stop the shutdown or the others
            log.exception("a stopping callback failed")

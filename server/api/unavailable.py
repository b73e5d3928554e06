"""One exception handler for "the store can't take this right now", for every plane.

A database error raised by any route — the admin API, a web app page, a form post — that means
the store is locked, full, read-only or unreachable (server/store/failures.py) becomes a 503
with ``Retry-After``: JSON ``{"code": "store_unavailable", "message": …}`` for programs, a short
HTML page for browsers. Any other exception is still the generic 500 (a bug: logged with its
traceback). Registered on the app (server/app.py), so no route has to catch it itself.

Also the net under "deleted meanwhile": a ``workspace.NotFound`` that no route caught (an edit
that read a row another request deleted before the write) is a 404 ``not_found``, not a 500.
"""

from __future__ import annotations

import logging
from html import escape

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from server.errors import error_response, server_error_handler
from server.store.failures import RETRY_AFTER, category, describe, is_unavailable
from server.store.workspace import NotFound

log = logging.getLogger("switchboard")

MESSAGE = "The store cannot take this request right now ({}); nothing was changed. Retry in a few seconds."


async def store_unavailable_handler(request: Request, exc: Exception) -> Response:
    if not is_unavailable(exc):
        return await server_error_handler(request, exc)
    log.warning("%s %s: store unavailable (%s)", request.method, request.url.path, describe(exc))
    message = MESSAGE.format(category(describe(exc)))
    headers = {"Retry-After": RETRY_AFTER}
    if "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/"):
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            "<link rel=stylesheet href='/static/app.css'><title>503 · Switchboard</title>"
            f"<main class=narrow><h1>503: the store is unavailable</h1><p>{escape(message)}</p>"
            "<p><a href=''>Try again</a></p></main></html>"
        )
        return HTMLResponse(body, status_code=503, headers=headers)
    return error_response(503, "store_unavailable", message, headers=headers)


async def row_gone_handler(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: %s was deleted meanwhile", request.method, request.url.path, exc)
    return error_response(404, "not_found", f"No {exc.args[0] if exc.args else 'such row'}")


# DBAPIError covers OperationalError, InternalError and the rest of the driver's errors; the
# pool's TimeoutError is SQLAlchemy's own.
STORE_HANDLERS = {DBAPIError: store_unavailable_handler, PoolTimeout: store_unavailable_handler,
                  NotFound: row_gone_handler}

"""The Audit log page: every change with who, when, what changed and from where, filtered by
the same query parameters as ``GET /api/v1/audit`` (``server.api.audit_query``), 100 a page.

Entries hold no secret (``server.store.audit`` masks them when they are written), so the page
shows them as they are.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import audit_query
from server.errors import ApiError
from server.store import audit
from server.web.render import render
from server.web.sessions import page

FIELDS = ("actor", "action", "subject", "since", "until")
SUBJECT_TYPES = ("source", "destination", "token", "user", "regulation", "event log")


@page
async def audit_page(request: Request) -> Response:
    shown = {name: request.query_params.get(name, "") for name in FIELDS}
    data: dict[str, Any] = {"filters": shown, "subject_types": SUBJECT_TYPES, "entries": [], "older": None,
                            "error": None}
    try:
        wanted = audit_query.filters(request.query_params)
    except ApiError as exc:
        data["error"] = exc.message
        return await render(request, "audit.html", data, status=400, title="Audit log")
    rows = await run_in_threadpool(lambda: audit.list_entries(request.app.state.engine, **wanted))
    data["entries"] = rows
    if len(rows) == wanted["limit"]:
        kept = {name: value for name, value in shown.items() if value}
        data["older"] = "/audit?" + urlencode({**kept, "before": rows[-1]["id"]})
    return await render(request, "audit.html", data, title="Audit log")


def routes() -> list[Route]:
    return [Route("/audit", audit_page, methods=["GET"])]

"""``GET /api/v1/audit``: the audit log (server/store/audit.py), newest first, with filters.

Readable by every signed-in role (viewers too): the entries hold no secret, only masks.
The answer is ``{"entries": [...], "next_before": id | null}``; pass ``next_before`` as
``before`` for the next page.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import audit_query
from server.api.auth import admin_endpoint
from server.errors import json_response
from server.store import audit


@admin_endpoint
async def audit_list(request: Request) -> Response:
    """The audit log, newest first (actor, action, subject, since, until, before, limit)."""
    wanted = audit_query.filters(request.query_params)
    rows = await run_in_threadpool(lambda: audit.list_entries(request.app.state.engine, **wanted))
    next_before = rows[-1]["id"] if len(rows) == wanted["limit"] else None
    return json_response({"entries": rows, "next_before": next_before})


audit_list.query_parameters = audit_query.PARAMETERS  # type: ignore[attr-defined]


def routes(config) -> list[Route]:
    return [Route("/api/v1/audit", audit_list, methods=["GET"])]

"""Admin read access to stored events: ``GET /api/v1/sources/{id}/events`` (newest first).

For the web app's debugger and for tests. ``limit`` (1–1000, default 50), ``type`` (one of the
six), ``before`` (an event id: page backwards with the ``next_before`` of the previous answer).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.auth import admin_endpoint
from server.errors import ApiError, json_response
from server.ingest.validate import TYPES
from server.store import events, workspace

MAX_LIMIT = 1000


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number from {low} to {high}", field=name)
    return int(raw)


@admin_endpoint
async def source_events(request: Request) -> Response:
    """A source's stored events, newest first (limit, type, before)."""
    engine = request.app.state.engine
    source_id = request.path_params["source_id"]
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    before = _int_param(request, "before", None, 1, 2**63 - 1)
    kind = request.query_params.get("type") or None
    if kind is not None and kind not in TYPES:
        raise ApiError(400, "invalid_parameter", f"type must be one of {', '.join(TYPES)}", field="type")
    try:
        await run_in_threadpool(workspace.get_source, engine, source_id)
    except workspace.NotFound:
        raise ApiError(404, "not_found", f"No source {source_id}") from None
    rows = await run_in_threadpool(events.list_events, engine, source_id, limit=limit, type=kind, before=before)
    next_before = rows[-1]["id"] if len(rows) == limit else None
    return json_response({"events": rows, "next_before": next_before})


def routes() -> list[Route]:
    return [Route("/api/v1/sources/{source_id:int}/events", source_events, methods=["GET"])]

"""REST API of the privacy plane: regulations (after Segment's Public API), the governance log,
and the store's disk use.

- ``POST /api/v1/regulations`` ``{"type", "user_ids", "source_ids"?}`` → 201 with the regulation.
- ``GET /api/v1/regulations`` (``limit``, ``before``) and ``GET /api/v1/regulations/{id}``.
- ``GET /api/v1/governance`` (``action``, ``limit``, ``before``): newest first.
- ``GET /api/v1/storage``: bytes on disk and row counts.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import regulations as service
from server.api.auth import actor, admin_endpoint
from server.api.body import read_json
from server.api.openapi import answers
from server.errors import ApiError, json_response
from server.store import disk, governance, regulations


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number from {low} to {high}", field=name)
    return value


@admin_endpoint
@answers(201)
async def regulations_create(request: Request) -> Response:
    """Create a regulation: {"type": suppress|delete|suppress_with_delete|unsuppress, "user_ids", "source_ids"?}."""
    body = await read_json(request)
    created = await run_in_threadpool(service.create, request.app.state.engine, body, actor(request))
    return json_response(created, 201)


@admin_endpoint
async def regulations_list(request: Request) -> Response:
    """Regulations, newest first (limit 1-1000, before: an id to page back from)."""
    limit = _int_param(request, "limit", 100, 1, 1000)
    before = _int_param(request, "before", None, 1, 2**62)
    rows = await run_in_threadpool(regulations.list_regulations, request.app.state.engine, limit=limit or 100,
                                   before_id=before)
    return json_response({"regulations": rows})


@admin_endpoint
async def regulation_get(request: Request) -> Response:
    """One regulation with its status and counts per store."""
    found = await run_in_threadpool(regulations.get, request.app.state.engine, request.path_params["id"])
    if found is None:
        raise ApiError(404, "not_found", f"No regulation {request.path_params['id']}")
    return json_response(found)


@admin_endpoint
async def governance_list(request: Request) -> Response:
    """The governance log, newest first (action, limit 1-1000, before: an id to page back from)."""
    limit = _int_param(request, "limit", 100, 1, 1000)
    before = _int_param(request, "before", None, 1, 2**62)
    action = request.query_params.get("action") or None
    rows = await run_in_threadpool(governance.list_entries, request.app.state.engine, action=action,
                                   limit=limit or 100, before_id=before)
    return json_response({"entries": rows})


@admin_endpoint
async def storage(request: Request) -> Response:
    """Disk use of the store: bytes and row counts."""
    return json_response(await run_in_threadpool(disk.usage, request.app.state.engine))


def routes(config) -> list[Route]:
    return [
        Route("/api/v1/regulations", regulations_create, methods=["POST"]),
        Route("/api/v1/regulations", regulations_list, methods=["GET"]),
        Route("/api/v1/regulations/{id:int}", regulation_get, methods=["GET"]),
        Route("/api/v1/governance", governance_list, methods=["GET"]),
        Route("/api/v1/storage", storage, methods=["GET"]),
    ]

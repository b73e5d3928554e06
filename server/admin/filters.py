"""Destination filters in the admin API (docs/filters.md):

- ``GET    /api/v1/destinations/{id}/filters`` — ``{"filters": [...]}``, in the order they run
- ``POST   /api/v1/destinations/{id}/filters`` ``{"if", "action", "fields"?, "percent"?}`` — append one
- ``PUT    /api/v1/destinations/{id}/filters`` ``{"filters": [...]}`` — replace (and so reorder) the list
- ``DELETE /api/v1/destinations/{id}/filters`` — remove all; ``…/filters/{n}`` — the n-th (0-based)

A condition that does not parse answers 422 ``invalid_filter`` with its ``position``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import filters as service
from server.api.auth import actor, admin_endpoint
from server.api.body import read_json
from server.errors import ApiError, json_response


def _ids(request: Request):
    return request.app.state.engine, request.app.state.catalog, request.path_params["id"]


@admin_endpoint
async def filters_get(request: Request) -> Response:
    """A destination's filters, in the order they run."""
    engine, _, destination_id = _ids(request)
    return json_response({"filters": await run_in_threadpool(service.get_filters, engine, destination_id)})


@admin_endpoint
async def filters_add(request: Request) -> Response:
    """Append one filter ({if, action, fields?, percent?})."""
    engine, catalog, destination_id = _ids(request)
    item = await read_json(request, max_bytes=100_000)
    stored = await run_in_threadpool(service.add_filter, engine, catalog, destination_id, item, actor(request))
    return json_response({"filters": stored}, 201)


@admin_endpoint
async def filters_put(request: Request) -> Response:
    """Replace the whole ordered list ({"filters": [...]}): how filters are reordered."""
    engine, catalog, destination_id = _ids(request)
    body = await read_json(request, max_bytes=1_000_000)
    if set(body) != {"filters"}:
        raise ApiError(422, "invalid_filter", 'The body must be {"filters": [...]}', field="filters")
    stored = await run_in_threadpool(service.set_filters, engine, catalog, destination_id, body["filters"],
                                     actor(request))
    return json_response({"filters": stored})


@admin_endpoint
async def filters_delete(request: Request) -> Response:
    """Remove every filter, or the one at {n} (0-based)."""
    engine, catalog, destination_id = _ids(request)
    index = request.path_params.get("n")
    stored = await run_in_threadpool(service.delete_filter, engine, catalog, destination_id, index, actor(request))
    return json_response({"filters": stored})


def routes(config) -> list[Route]:
    base = "/api/v1/destinations/{id:int}/filters"
    return [
        Route(base, filters_get, methods=["GET"]),
        Route(base, filters_add, methods=["POST"]),
        Route(base, filters_put, methods=["PUT"]),
        Route(base, filters_delete, methods=["DELETE"]),
        Route(base + "/{n:int}", filters_delete, methods=["DELETE"]),
    ]

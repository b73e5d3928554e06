"""The admin REST API under /api/v1 (Bearer token; see auth.py).

Routes for sources, destinations, settings history and the catalog (users and tokens: access.py). Other planes add
their own /api/v1 routes (events, delivery stats, dead letters, warehouse syncs) in their own
modules with the same ``admin_endpoint`` guard; ``openapi.json`` describes all of them.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import service
from server.api.auth import actor, admin_endpoint
from server.api.body import read_json
from server.api.openapi import answers, openapi_document
from server.errors import ApiError, json_response
from server.store import audit, workspace

def _state(request: Request):
    return request.app.state.engine, request.app.state.catalog


# ---------------------------------------------------------------- catalog


@admin_endpoint
async def catalog_list(request: Request) -> Response:
    """List every destination in the catalog."""
    return json_response({"destinations": [m.to_json() for m in request.app.state.catalog]})


@admin_endpoint
async def catalog_item(request: Request) -> Response:
    """One catalog entry (manifest) by slug."""
    manifest = request.app.state.catalog.get(request.path_params["slug"])
    if manifest is None:
        raise ApiError(404, "not_found", f"No destination {request.path_params['slug']!r} in the catalog")
    return json_response(manifest.to_json())


# ---------------------------------------------------------------- sources


@admin_endpoint
async def sources_list(request: Request) -> Response:
    """List sources."""
    rows = await run_in_threadpool(workspace.list_sources, request.app.state.engine)
    return json_response({"sources": [service.source_json(r) for r in rows]})


@admin_endpoint
@answers(201)
async def sources_create(request: Request) -> Response:
    """Create a source: {"name"} → 201 with its write key."""
    body = await read_json(request)
    created = await run_in_threadpool(service.create_source, request.app.state.engine, body, actor(request))
    return json_response(created, 201)


@admin_endpoint
async def source_get(request: Request) -> Response:
    """One source."""
    return json_response(await run_in_threadpool(service.get_source, request.app.state.engine, request.path_params["id"]))


@admin_endpoint
async def source_patch(request: Request) -> Response:
    """Rename, enable or disable a source, set the library name its bundle reports, or turn
    server-set cookies on or off: {"name"?, "enabled"?, "library_name"? (text, or null for
    "switchboard.js"), "server_cookies"? (true/false)}."""
    body = await read_json(request)
    engine = request.app.state.engine
    return json_response(await run_in_threadpool(service.update_source, engine, request.path_params["id"], body, actor(request)))


@admin_endpoint
@answers(204)
async def source_delete(request: Request) -> Response:
    """Delete a source, its destinations and its history."""
    engine = request.app.state.engine
    try:
        await run_in_threadpool(lambda: workspace.delete_source(engine, request.path_params["id"], actor=actor(request)))
    except workspace.NotFound as exc:
        raise ApiError(404, "not_found", f"No {exc.args[0]}") from None
    return Response(status_code=204)


@admin_endpoint
async def source_rotate(request: Request) -> Response:
    """Give the source a new write key; the old one stops working at once."""
    engine = request.app.state.engine
    try:
        row = await run_in_threadpool(workspace.rotate_write_key, engine, request.path_params["id"], actor=actor(request))
    except workspace.NotFound as exc:
        raise ApiError(404, "not_found", f"No {exc.args[0]}") from None
    return json_response(service.source_json(row))


# ---------------------------------------------------------------- destinations


@admin_endpoint
async def destinations_list(request: Request) -> Response:
    """Destinations connected to a source."""
    engine, catalog = _state(request)
    source_id = request.path_params["id"]
    await run_in_threadpool(service.get_source, engine, source_id)
    rows = await run_in_threadpool(workspace.list_destinations, engine, source_id)
    return json_response({"destinations": [service.destination_json(catalog, r) for r in rows]})


@admin_endpoint
@answers(201)
async def destinations_create(request: Request) -> Response:
    """Connect a catalog destination: {"slug", "mode", "enabled", "settings"} → 201."""
    engine, catalog = _state(request)
    body = await read_json(request)
    created = await run_in_threadpool(
        service.add_destination, engine, catalog, request.path_params["id"], body, actor(request),
        allow_private_egress=request.app.state.config.allow_private_egress,
    )
    return json_response(created, 201)


@admin_endpoint
async def destination_get(request: Request) -> Response:
    """One destination, secrets masked."""
    engine, catalog = _state(request)
    return json_response(await run_in_threadpool(service.get_destination, engine, catalog, request.path_params["id"]))


@admin_endpoint
async def destination_patch(request: Request) -> Response:
    """Merge settings, change enabled or mode. Sending "********" for a secret keeps it."""
    engine, catalog = _state(request)
    body = await read_json(request)
    return json_response(
        await run_in_threadpool(
            service.update_destination, engine, catalog, request.path_params["id"], body, actor(request),
            allow_private_egress=request.app.state.config.allow_private_egress,
        )
    )


@admin_endpoint
@answers(204)
async def destination_delete(request: Request) -> Response:
    """Disconnect a destination from its source."""
    engine, catalog = _state(request)
    await run_in_threadpool(service.delete_destination, engine, catalog, request.path_params["id"], actor(request))
    return Response(status_code=204)


# ---------------------------------------------------------------- history


@admin_endpoint
async def versions_list(request: Request) -> Response:
    """Every settings version of a source, newest first."""
    engine, catalog = _state(request)
    source_id = request.path_params["id"]
    try:
        rows = await run_in_threadpool(workspace.list_versions, engine, source_id)
    except workspace.NotFound as exc:
        raise ApiError(404, "not_found", f"No {exc.args[0]}") from None
    return json_response({"versions": [service.version_json(catalog, source_id, r) for r in rows]})


@admin_endpoint
async def version_get(request: Request) -> Response:
    """One settings version with its full content (secrets masked)."""
    engine, catalog = _state(request)
    source_id, number = request.path_params["id"], request.path_params["n"]
    try:
        row = await run_in_threadpool(workspace.get_version, engine, source_id, number)
    except workspace.NotFound as exc:
        raise ApiError(404, "not_found", f"No {exc.args[0]}") from None
    return json_response(service.version_json(catalog, source_id, row))


@admin_endpoint
async def version_rollback(request: Request) -> Response:
    """Make version n current again; writes a new version with n's content."""
    engine, catalog = _state(request)
    source_id, number = request.path_params["id"], request.path_params["n"]
    try:
        new_version = await run_in_threadpool(workspace.rollback, engine, source_id, number, actor=actor(request))
    except workspace.NotFound as exc:
        raise ApiError(404, "not_found", f"No {exc.args[0]}") from None
    row = await run_in_threadpool(workspace.get_version, engine, source_id, new_version)
    return json_response(service.version_json(catalog, source_id, row))


# ---------------------------------------------------------------- the document


@admin_endpoint
async def openapi(request: Request) -> Response:
    """This document."""
    return json_response(openapi_document(request.app))


def routes(config) -> list[Route]:
    return [
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/catalog", catalog_list, methods=["GET"]),
        Route("/api/v1/catalog/{slug:str}", catalog_item, methods=["GET"]),
        Route("/api/v1/sources", sources_list, methods=["GET"]),
        Route("/api/v1/sources", sources_create, methods=["POST"]),
        Route("/api/v1/sources/{id:int}", source_get, methods=["GET"]),
        Route("/api/v1/sources/{id:int}", source_patch, methods=["PATCH"]),
        Route("/api/v1/sources/{id:int}", source_delete, methods=["DELETE"]),
        Route("/api/v1/sources/{id:int}/rotate-write-key", source_rotate, methods=["POST"]),
        Route("/api/v1/sources/{id:int}/destinations", destinations_list, methods=["GET"]),
        Route("/api/v1/sources/{id:int}/destinations", destinations_create, methods=["POST"]),
        Route("/api/v1/destinations/{id:int}", destination_get, methods=["GET"]),
        Route("/api/v1/destinations/{id:int}", destination_patch, methods=["PATCH"]),
        Route("/api/v1/destinations/{id:int}", destination_delete, methods=["DELETE"]),
        Route("/api/v1/sources/{id:int}/versions", versions_list, methods=["GET"]),
        Route("/api/v1/sources/{id:int}/versions/{n:int}", version_get, methods=["GET"]),
        Route("/api/v1/sources/{id:int}/versions/{n:int}/rollback", version_rollback, methods=["POST"]),
    ]

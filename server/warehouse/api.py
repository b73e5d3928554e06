"""Admin API for warehouse destinations: sync history, "sync now", and the events a warehouse
refused (listed, and re-loaded once their cause is fixed)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.auth import actor, admin_endpoint
from server.errors import ApiError, json_response
from server.store import warehouse as store
from server.store import warehouse_skipped, workspace
from server.warehouse.sync import SLUG, sync_on_request

WAITING_CAP = 100_000  # "100000" reads as "at least that many": counting further costs a scan


def _sync_json(sync: dict) -> dict:
    return {
        "id": sync["id"],
        "destination_id": sync["destination_id"],
        "trigger": sync["trigger"],
        "started_at": sync["started_at"].isoformat(),
        "finished_at": sync["finished_at"].isoformat() if sync["finished_at"] else None,
        "status": "running" if sync["finished_at"] is None else ("failed" if sync["error"] else "succeeded"),
        "events": sync["events"],
        "rows": sync["rows"],
        "notices": sync["notices"],
        "error": sync["error"],
        "skipped": sync["skipped"],
    }


async def _warehouse(request: Request) -> dict:
    destination_id = request.path_params["id"]
    engine = request.app.state.engine
    try:
        destination = await run_in_threadpool(workspace.get_destination, engine, destination_id)
    except workspace.NotFound:
        raise ApiError(404, "not_found", f"No destination {destination_id}") from None
    if destination["slug"] != SLUG:
        raise ApiError(
            409, "not_a_warehouse", f"Destination {destination_id} is {destination['slug']!r}; only warehouses sync"
        )
    return destination


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 500:
        raise ApiError(400, "invalid_limit", "limit must be a whole number from 1 to 500", field="limit")
    return limit


@admin_endpoint
async def syncs_list(request: Request) -> Response:
    """A warehouse destination's syncs, newest first, its cursor and how many events wait."""
    destination = await _warehouse(request)
    engine = request.app.state.engine
    syncs = await run_in_threadpool(store.list_syncs, engine, destination["id"], _limit(request))
    cursor = await run_in_threadpool(store.get_cursor, engine, destination["id"])
    waiting = await run_in_threadpool(store.pending_count, engine, destination["source_id"], cursor, WAITING_CAP)
    return json_response({"syncs": [_sync_json(s) for s in syncs], "cursor": cursor, "waiting": waiting})


@admin_endpoint
async def sync_now(request: Request) -> Response:
    """Sync a warehouse destination now; answers with the finished sync's record."""
    destination = await _warehouse(request)
    state = request.app.state
    sync = await run_in_threadpool(lambda: sync_on_request(
        state.engine, state.catalog, state.config, destination["id"], trigger="api", actor=actor(request)))
    return json_response({"sync": _sync_json(sync)})


@admin_endpoint
async def skipped_list(request: Request) -> Response:
    """The events a warehouse destination refused and skipped, newest first, with the error."""
    destination = await _warehouse(request)
    engine = request.app.state.engine
    entries, total = await run_in_threadpool(warehouse_skipped.list_skipped, engine, destination["id"],
                                             _limit(request))
    return json_response({"skipped": [dict(e, skipped_at=e["skipped_at"].isoformat()) for e in entries],
                          "total": total})


@admin_endpoint
async def skipped_reload(request: Request) -> Response:
    """Load the skipped events again (those still refused stay listed), then sync as usual."""
    destination = await _warehouse(request)
    state = request.app.state
    sync = await run_in_threadpool(lambda: sync_on_request(
        state.engine, state.catalog, state.config, destination["id"], trigger="api", actor=actor(request),
        reload=True))
    return json_response({"sync": _sync_json(sync)})


def routes(config) -> list[Route]:
    return [
        Route("/api/v1/destinations/{id:int}/syncs", syncs_list, methods=["GET"]),
        Route("/api/v1/destinations/{id:int}/sync", sync_now, methods=["POST"]),
        Route("/api/v1/destinations/{id:int}/skipped", skipped_list, methods=["GET"]),
        Route("/api/v1/destinations/{id:int}/skipped/reload", skipped_reload, methods=["POST"]),
    ]

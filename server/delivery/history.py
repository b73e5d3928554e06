"""History replay (docs/delivery.md, "History replay"): queue the stored events of a time window
again for one cloud-mode destination, with the routing rules, its filters and its current
settings applied, released at ``SWITCHBOARD_REPLAY_RATE`` events per second.

- ``POST /api/v1/destinations/{id}/replay`` ``{"since", "until"?, "types"?, "events"?}`` →
  ``{"queued": n, "replay_id": …, "state": "queued" | "queuing"}`` (``queuing``: the window is
  larger than the request queues itself, the delivery workers queue the rest as it is released)
- ``GET  /api/v1/destinations/{id}/replays`` → each replay with ``queued``, ``delivered``,
  ``pending``, ``dead``, ``skipped``

The web app's button and ``switchboard replay --history`` call ``start_replay`` too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.auth import actor, admin_endpoint
from server.api.body import read_json
from server.catalog import Catalog
from server.delivery.router import route
from server.errors import ApiError, json_response
from server.store import governance
from server.store import replay_queue as queue
from server.store import replays as store
from server.store import workspace

TYPES = ("track", "page", "screen", "identify", "group", "alias")


def _names(value: Any, field: str, allowed: tuple[str, ...] | None = None) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or len(value) > 1000:
        raise ApiError(422, "validation_error", f"{field} must be a list of names", field=field)
    bad = [v for v in value if allowed and v not in allowed]
    if bad:
        raise ApiError(422, "validation_error", f"{field}: {bad[0]!r} is not one of {', '.join(allowed or ())}",
                       field=field)
    return list(dict.fromkeys(value)) or None


def start_replay(engine: Engine, catalog: Catalog, destination_id: int, *, since: datetime | None,
                 until: datetime | None, types: Any = None, events: Any = None, rate: float,
                 actor: str) -> dict[str, Any]:
    """Start the replay and queue its first events; return ``{"queued", "replay_id", "state"}``
    (``server/store/replay_queue.py``). ApiError for a bad request."""
    try:
        destination = workspace.get_destination(engine, destination_id)
        source = workspace.get_source(engine, destination["source_id"])
    except workspace.NotFound:
        raise ApiError(404, "not_found", f"No destination {destination_id}") from None
    if since is None:
        raise ApiError(422, "validation_error", "since is required (an ISO time)", field="since")
    if until is not None and until <= since:
        raise ApiError(422, "validation_error", "until must be after since", field="until")
    type_list, names = _names(types, "types", TYPES), _names(events, "events")
    if destination["mode"] != "cloud":
        raise ApiError(422, "not_cloud_mode", "Only cloud-mode destinations can replay history: the browser "
                       "delivers device-mode events when they happen")

    row = queue.queue_replay(engine, destination_id, since=since, until=until, types=type_list, event_names=names,
                             routes=_routes(catalog, source, destination), rate=rate, actor=actor, decode=orjson.loads)
    _record(engine, actor, destination_id, row)
    return {"queued": row["queued"], "replay_id": row["id"], "state": row["state"]}


def _routes(catalog: Catalog, source: dict[str, Any], destination: dict[str, Any]) -> queue.Routes:
    def routes(payload: dict[str, Any], event_type: str) -> bool:
        return bool(route(payload, event_type, source["enabled"], [destination], catalog))
    return routes


def replay_routes(engine: Engine, catalog: Catalog, destination_id: int) -> queue.Routes:
    """The routing decision for a replay continued later (the workers' queuer): with the
    destination's settings as they are now; nothing routes once it was removed."""
    try:
        destination = workspace.get_destination(engine, destination_id)
        source = workspace.get_source(engine, destination["source_id"])
    except workspace.NotFound:
        return lambda payload, event_type: False
    return _routes(catalog, source, destination)


def _record(engine: Engine, actor: str, destination_id: int, row: dict[str, Any]) -> None:
    """The governance log (server/store/governance.py)."""
    details = {"replay_id": row["id"], "since": _iso(row["since"]), "until": _iso(row["until"]),
               "types": row["types"], "events": row["event_names"]}
    governance.record(engine, actor=actor, action="replay.history", subject=f"destination:{destination_id}",
                      details=details, counts={"queued": row["queued"]})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def replay_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "destination_id": row["destination_id"], "since": _iso(row["since"]),
        "until": _iso(row["until"]), "types": row["types"], "events": row["event_names"], "state": row["state"],
        "queued": row["queued"], "delivered": row["delivered"], "pending": row["pending"], "dead": row["dead"],
        "skipped": row["skipped"], "actor": row["actor"], "created_at": _iso(row["created_at"]),
    }


def history_replays(engine: Engine, destination_id: int) -> list[dict[str, Any]]:
    return [replay_json(r) for r in store.list_replays(engine, destination_id)]


@admin_endpoint
async def replay_history(request: Request) -> Response:
    """Queue the stored events of a window ({since, until?, types?, events?}) for this destination."""
    from server.delivery.api import parse_when

    body = await read_json(request, max_bytes=100_000)
    unknown = sorted(set(body) - {"since", "until", "types", "events"})
    if unknown:
        raise ApiError(422, "validation_error", f"{unknown[0]} is not a replay field", field=unknown[0])
    since, until = parse_when(body.get("since"), "since"), parse_when(body.get("until"), "until")
    state = request.app.state
    result = await run_in_threadpool(
        lambda: start_replay(state.engine, state.catalog, request.path_params["id"], since=since, until=until,
                             types=body.get("types"), events=body.get("events"), rate=state.config.replay_rate,
                             actor=actor(request)))
    return json_response(result, 202)


@admin_endpoint
async def replays_list(request: Request) -> Response:
    """This destination's history replays, newest first, with their progress."""
    engine = request.app.state.engine
    try:
        await run_in_threadpool(workspace.get_destination, engine, request.path_params["id"])
    except workspace.NotFound:
        raise ApiError(404, "not_found", f"No destination {request.path_params['id']}") from None
    return json_response({"replays": await run_in_threadpool(history_replays, engine, request.path_params["id"])})


def routes(config) -> list[Route]:
    base = "/api/v1/destinations/{id:int}"
    return [Route(base + "/replay", replay_history, methods=["POST"]),
            Route(base + "/replays", replays_list, methods=["GET"])]

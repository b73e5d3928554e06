"""Admin routes of the delivery plane (Bearer token, ``@admin_endpoint``):

- ``GET  /api/v1/destinations/{id}/stats`` — counts, p50/p99 latency, last error, 24 h series
- ``GET  /api/v1/destinations/{id}/dead-letters?since=&until=&limit=&before=`` — newest first
- ``GET  /api/v1/destinations/{id}/dead-letters/{job_id}`` — request, response and every attempt
  (secret settings masked here and in stats: server/delivery/masking.py)
- ``POST /api/v1/destinations/{id}/dead-letters/replay`` ``{since?, until?, ids?}`` — queue again;
  the worker re-translates with the destination's *current* settings.

Time ranges filter on the event's receipt time, ISO 8601 (``2026-01-02T03:04:05Z``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.auth import actor, admin_endpoint
from server.api.body import read_json
from server.delivery import stats
from server.delivery.masking import masked
from server.errors import ApiError, json_response
from server.store import delivery as store
from server.store import governance
from server.store import workspace

MAX_LIMIT = 500


def parse_when(value: str | None, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "invalid_time", f"{field} must be an ISO 8601 time such as 2026-01-02T03:04:05Z",
                       field=field) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _int(value: str | None, field: str, default: int | None) -> int | None:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, "invalid_number", f"{field} must be a whole number", field=field) from None
    if number < 1:
        raise ApiError(400, "invalid_number", f"{field} must be at least 1", field=field)
    return number


async def _destination(request: Request) -> dict[str, Any]:
    try:
        destination_id = int(request.path_params["id"])
        return await run_in_threadpool(workspace.get_destination, request.app.state.engine, destination_id)
    except (ValueError, workspace.NotFound):
        raise ApiError(404, "not_found", f"No destination {request.path_params['id']!r}") from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def dead_letter_summary(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job["id"], "event_id": job["event_id"], "message_id": job["message_id"], "type": job["event_type"],
        "received_at": _iso(job["received_at"]), "dead_at": _iso(job["finished_at"]), "attempts": job["attempts"],
        "last_status": job["last_status"], "last_error": job["last_error"],
    }


def _attempt(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": _iso(row["at"]), "outcome": row["outcome"], "status": row["status"], "error": row["error"],
        "latency_ms": row["latency_ms"], "request": orjson.loads(row["request"]) if row["request"] else None,
        "response": row["response"],
    }


@admin_endpoint
async def destination_stats(request: Request) -> Response:
    """Delivery stats of one destination: delivered, retrying, dead, p50/p99 latency, last error, 24 h series."""
    destination = await _destination(request)
    figures = await run_in_threadpool(stats.destination_stats, request.app.state.engine, destination)
    return json_response(masked(figures, request.app.state.catalog.get(destination["slug"]), destination))


@admin_endpoint
async def dead_letters(request: Request) -> Response:
    """Dead letters of one destination, newest first; filter by receipt time with since/until."""
    destination = await _destination(request)
    q = request.query_params
    since, until = parse_when(q.get("since"), "since"), parse_when(q.get("until"), "until")
    limit = min(_int(q.get("limit"), "limit", 100), MAX_LIMIT)
    before = _int(q.get("before"), "before", None)
    engine = request.app.state.engine
    rows = await run_in_threadpool(
        lambda: store.list_dead(engine, destination["id"], since=since, until=until, limit=limit, before=before)
    )
    total = await run_in_threadpool(lambda: store.count_dead(engine, destination["id"], since=since, until=until))
    return json_response({"dead_letters": [dead_letter_summary(r) for r in rows], "total": total,
                          "next_before": rows[-1]["id"] if len(rows) == limit else None})


@admin_endpoint
async def dead_letter(request: Request) -> Response:
    """One dead letter: the event, the last request and response, and every attempt."""
    destination = await _destination(request)
    job = await run_in_threadpool(store.get_job, request.app.state.engine, request.path_params["job_id"])
    if job is None or job["destination_id"] != destination["id"]:
        raise ApiError(404, "not_found", f"No delivery {request.path_params['job_id']} for this destination")
    attempts = [_attempt(a) for a in job["attempts_log"]]
    return json_response(masked({
        **dead_letter_summary(job),
        "status": job["status"],
        "event": orjson.loads(job["payload"]) if job["payload"] else None,
        "request": attempts[-1]["request"] if attempts else None,
        "response": {"status": attempts[-1]["status"], "body": attempts[-1]["response"]} if attempts else None,
        "attempts_log": attempts,
    }, request.app.state.catalog.get(destination["slug"]), destination))


@admin_endpoint
async def replay(request: Request) -> Response:
    """Queue a destination's dead letters again (all, a receipt-time range, or given ids)."""
    destination = await _destination(request)
    body = await read_json(request, max_bytes=100_000)
    since, until = parse_when(body.get("since"), "since"), parse_when(body.get("until"), "until")
    ids = body.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
        raise ApiError(400, "invalid_ids", "ids must be a list of dead-letter ids (numbers)", field="ids")
    engine = request.app.state.engine
    count = await run_in_threadpool(
        lambda: store.replay(engine, destination["id"], since=since, until=until, job_ids=ids)
    )
    await run_in_threadpool(lambda: governance.record(
        engine, actor=actor(request), action="replay.dead_letters", subject=f"destination:{destination['id']}",
        details={"since": _iso(since), "until": _iso(until), "ids": ids}, counts={"replayed": count}))
    return json_response({"replayed": count})


def routes(config) -> list[Route]:
    base = "/api/v1/destinations/{id:int}"
    return [
        Route(base + "/stats", destination_stats, methods=["GET"]),
        Route(base + "/dead-letters", dead_letters, methods=["GET"]),
        Route(base + "/dead-letters/replay", replay, methods=["POST"]),
        Route(base + "/dead-letters/{job_id:int}", dead_letter, methods=["GET"]),
    ]

"""REST API of the alerts plane (admin token). See docs/admin-api.md and docs/alerts.md.

- ``GET /api/v1/alerts`` → ``{"alerts": [rule, …]}`` with each rule's ``state`` (ok | firing).
- ``POST /api/v1/alerts`` → 201 with the rule; 422 ``validation_error`` names the ``field``.
- ``GET/PATCH/DELETE /api/v1/alerts/{id}``; PATCH takes any subset of the fields.
- ``GET /api/v1/alerts/{id}/history`` (``limit`` 1-1000) → ``{"history": [event, …]}``, newest first.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import alerts as service
from server.api.auth import actor, admin_endpoint
from server.api.body import read_json
from server.api.openapi import answers
from server.errors import ApiError, json_response
from server.store import alerts as store


def _missing(rule_id: int) -> ApiError:
    return ApiError(404, "not_found", f"No alert rule {rule_id}")


@admin_endpoint
async def alerts_list(request: Request) -> Response:
    """Alert rules with their state (ok or firing)."""
    rules = await run_in_threadpool(store.list_rules, request.app.state.engine)
    return json_response({"alerts": [service.public(r) for r in rules]})


@admin_endpoint
@answers(201)
async def alerts_create(request: Request) -> Response:
    """Create a rule: {"name", "kind", "destination_id"|"source_id", "threshold", "window_minutes", "notify"}."""
    body = await read_json(request)
    return json_response(await run_in_threadpool(
        lambda: service.create(request.app.state.engine, body, actor=actor(request))), 201)


@admin_endpoint
async def alert_get(request: Request) -> Response:
    """One alert rule."""
    rule_id = request.path_params["id"]
    rule = await run_in_threadpool(store.get_rule, request.app.state.engine, rule_id)
    if rule is None:
        raise _missing(rule_id)
    return json_response(service.public(rule))


@admin_endpoint
async def alert_patch(request: Request) -> Response:
    """Change some fields of a rule; switching it off or re-aiming it starts it again from ok."""
    rule_id = request.path_params["id"]
    body = await read_json(request)
    rule = await run_in_threadpool(
        lambda: service.change(request.app.state.engine, rule_id, body, actor=actor(request)))
    if rule is None:
        raise _missing(rule_id)
    return json_response(rule)


@admin_endpoint
@answers(204)
async def alert_delete(request: Request) -> Response:
    """Delete a rule and its history."""
    rule_id = request.path_params["id"]
    if not await run_in_threadpool(
            lambda: store.delete_rule(request.app.state.engine, rule_id, actor=actor(request))):
        raise _missing(rule_id)
    return Response(status_code=204)


@admin_endpoint
async def alert_history(request: Request) -> Response:
    """Firings and resolutions of a rule, newest first, with whether the notification went out."""
    rule_id = request.path_params["id"]
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ApiError(400, "invalid_limit", "limit must be a whole number from 1 to 1000", field="limit")
    engine = request.app.state.engine
    if await run_in_threadpool(store.get_rule, engine, rule_id) is None:
        raise _missing(rule_id)
    rows = await run_in_threadpool(store.history, engine, rule_id, int(raw))
    return json_response({"history": [service.public_event(r) for r in rows]})


def routes(config) -> list[Route]:
    return [
        Route("/api/v1/alerts", alerts_list, methods=["GET"]),
        Route("/api/v1/alerts", alerts_create, methods=["POST"]),
        Route("/api/v1/alerts/{id:int}", alert_get, methods=["GET"]),
        Route("/api/v1/alerts/{id:int}", alert_patch, methods=["PATCH"]),
        Route("/api/v1/alerts/{id:int}", alert_delete, methods=["DELETE"]),
        Route("/api/v1/alerts/{id:int}/history", alert_history, methods=["GET"]),
    ]

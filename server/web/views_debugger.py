"""The source debugger: a live stream of the source's incoming events over Server-Sent Events.

The stream polls the event log (``server.store.events``) four times a second for rows newer
than the last one sent; each SSE message carries the event id, so a reconnecting EventSource
resumes where it stopped (``Last-Event-ID``). Clicking an event fetches its full JSON and the
destinations it is routed to.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from server.admin import service
from server.errors import ApiError, json_response
from server.store import events, workspace
from server.web import others
from server.web.render import render
from server.web.routing import routed_to
from server.web.sessions import page, web_error

POLL_SECONDS = 0.25
BACKLOG = 20  # events shown when the debugger opens
STREAM_SECONDS = 300  # then the browser reconnects on its own (EventSource), resuming by id


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    event = row["event"]
    name = event.get("event") or event.get("name") or event.get("userId") or event.get("groupId") or ""
    return {
        "id": row["id"], "type": row["type"], "message_id": row["message_id"],
        "received_at": row["received_at"].isoformat(), "name": str(name),
        "user": event.get("userId") or event.get("anonymousId") or "",
    }


@page
async def debugger_page(request: Request) -> Response:
    source_id = request.path_params["id"]
    try:
        source = await run_in_threadpool(service.get_source, request.app.state.engine, source_id)
    except ApiError:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    rows = await run_in_threadpool(events.list_events, request.app.state.engine, source_id, limit=BACKLOG)
    data = {
        "source": source,
        "events": [_summary(r) for r in rows],
        "stream_url": f"/sources/{source_id}/debugger/stream",
        "types": ["track", "page", "identify", "group", "alias", "screen"],
    }
    return await render(request, "debugger.html", data, title=f"Debugger · {source['name']}")


async def _stream(request: Request, source_id: int, after: int) -> AsyncIterator[bytes]:
    engine = request.app.state.engine
    deadline = time.monotonic() + STREAM_SECONDS
    yield b"retry: 1000\n\n"
    while time.monotonic() < deadline:
        rows = await run_in_threadpool(events.list_events, engine, source_id, limit=100)
        fresh = [r for r in reversed(rows) if r["id"] > after]
        for row in fresh:
            after = row["id"]
            yield b"id: %d\nevent: event\ndata: %s\n\n" % (row["id"], orjson.dumps(_summary(row)))
        if not fresh:
            yield b": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


@page
async def debugger_stream(request: Request) -> Response:
    source_id = request.path_params["id"]
    try:
        await run_in_threadpool(service.get_source, request.app.state.engine, source_id)
    except ApiError:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    after = int(raw) if raw.isdigit() else 0
    return StreamingResponse(
        _stream(request, source_id, after), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@page
async def event_detail(request: Request) -> Response:
    source_id, event_id = request.path_params["id"], request.path_params["event_id"]
    engine, catalog = request.app.state.engine, request.app.state.catalog
    row = await run_in_threadpool(events.get_event, engine, event_id)
    if row is None or row["source_id"] != source_id:
        return web_error(request, 404, "not_found", f"Source {source_id} has no event {event_id}.")
    dests = await run_in_threadpool(workspace.list_destinations, engine, source_id)
    routed = routed_to(catalog, dests, row["event"])
    deliveries = await run_in_threadpool(others.event_deliveries, engine, event_id)
    for entry in routed:
        # What delivery actually did with it (cloud mode), when the delivery plane is installed.
        entry["delivery"] = None if deliveries is None else deliveries.get(entry["id"])
    return json_response({**_summary(row), "event": row["event"], "routed_to": routed})


def routes() -> list[Route]:
    return [
        Route("/sources/{id:int}/debugger", debugger_page, methods=["GET"]),
        Route("/sources/{id:int}/debugger/stream", debugger_stream, methods=["GET"]),
        Route("/sources/{id:int}/debugger/events/{event_id:int}", event_detail, methods=["GET"]),
    ]

"""The source debugger: a live stream of the source's incoming events over Server-Sent Events.

The stream reads the event log (``server.store.events``) for rows newer than the last one sent
whenever the log announces an append (and every half second in any case). Each SSE message
carries the event id, so a reconnecting EventSource resumes where it stopped (``Last-Event-ID``). Clicking an event fetches its full JSON and the
destinations it is routed to.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any, AsyncIterator

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from server.api import service
from server.api.edge.stopping import when_stopping
from server.errors import ApiError, json_response
from server.store import events, notify, rejections, workspace
from server.store.suppression_lookup import suppression_of
from server import delivery
from server.web.render import render
from server.web.routing import routed_to
from server.web.sessions import page, web_error

POLL_SECONDS = 0.5  # fallback; appends in this process (or NOTIFY'd by others) wake streams at once
BACKLOG = 20  # events shown when the debugger opens
REFUSED_SHOWN = 20  # newest refused events listed under the stream
# Each stream ends after this long and the browser reconnects at once, resuming by event id.
# `switchboard serve` ends every stream as soon as it starts to stop (_end_streams); under another
# ASGI server, which waits for open responses before it shuts down, an open debugger tab delays a
# restart by at most this much.
STREAM_SECONDS = 15
LATE_SECONDS = 2.0  # how long after a higher id a lower one may still commit (PostgreSQL)


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
    refused = await run_in_threadpool(_refused, request.app.state.engine, source_id)
    data = {
        "refused": refused,
        "source": source,
        "events": [_summary(r) for r in rows],
        "stream_url": f"/sources/{source_id}/debugger/stream",
        "types": ["track", "page", "identify", "group", "alias", "screen"],
        # For the empty state: a test event this source accepts, sent from a terminal.
        "curl": (f"curl -u '{source['write_key']}:' -H 'Content-Type: application/json' "
                 f"-d '{{\"event\": \"Test Event\", \"anonymousId\": \"test-user\"}}' "
                 f"{str(request.base_url).rstrip('/')}/v1/track"),
    }
    return await render(request, "debugger.html", data, title=f"Debugger · {source['name']}")


def _refused(engine, source_id: int) -> dict[str, Any]:
    """Batch items the collector refused on their own (e.g. over 32 KB): counts and newest records."""
    counts = {reason: n for (_, reason), n in rejections.counts(engine, source_id).items()}
    return {"counts": counts, "total": sum(counts.values()), "kept": rejections.KEEP,
            "events": rejections.recent(engine, source_id, REFUSED_SHOWN)}


events_after = events.events_after  # the stream's query lives in the store


# Open streams, woken by the event log's append hook (called from any thread).
_waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
_subscribed = False
# The event loops of servers that have started to stop: their streams end at once, so that an
# open debugger tab does not hold a restart back (server/api/edge/stopping.py).
_stopping: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _end_streams() -> None:
    loop = asyncio.get_running_loop()
    _stopping.add(loop)
    for other, flag in list(_waiting):
        if other is loop:
            flag.set()


when_stopping(_end_streams)


def _wake(max_id: int) -> None:
    for loop, flag in list(_waiting):
        try:
            loop.call_soon_threadsafe(flag.set)
        except RuntimeError:  # that loop has closed
            _waiting.discard((loop, flag))


async def _stream(request: Request, source_id: int, after: int) -> AsyncIterator[bytes]:
    global _subscribed
    if not _subscribed:
        notify.EVENTS.subscribe(_wake)
        _subscribed = True
    engine = request.app.state.engine
    deadline = time.monotonic() + STREAM_SECONDS
    flag = asyncio.Event()
    me = (asyncio.get_running_loop(), flag)
    _waiting.add(me)
    try:
        yield b"retry: 500\n\n"
        # With several collector processes on PostgreSQL an id can become visible after a higher
        # one was shown: each poll reads again from where the stream stood LATE_SECONDS ago and
        # skips what it already sent, so a late commit still appears.
        positions: list[tuple[float, int]] = [(time.monotonic(), after)]
        sent: dict[int, float] = {}
        while time.monotonic() < deadline and me[0] not in _stopping:
            flag.clear()
            now = time.monotonic()
            while len(positions) > 1 and now - positions[1][0] > LATE_SECONDS:
                positions.pop(0)
            base = positions[0][1]
            sent = {i: t for i, t in sent.items() if i > base}
            fresh = await run_in_threadpool(events_after, engine, source_id, base, 200, frozenset(sent))
            for row in fresh:
                sent[row["id"]] = now
                after = max(after, row["id"])
                yield b"id: %d\nevent: event\ndata: %s\n\n" % (after, orjson.dumps(_summary(row)))
            positions.append((now, after))
            if not fresh:
                yield b": keep-alive\n\n"
                try:
                    await asyncio.wait_for(flag.wait(), POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
    finally:
        _waiting.discard(me)


@page
async def debugger_stream(request: Request) -> Response:
    source_id = request.path_params["id"]
    try:
        await run_in_threadpool(service.get_source, request.app.state.engine, source_id)
    except ApiError:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or ""
    if raw.isdigit():
        after = int(raw)
    else:  # no position given: start with what arrives from now on
        latest = await run_in_threadpool(events.list_events, request.app.state.engine, source_id, limit=1)
        after = latest[0]["id"] if latest else 0
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
    suppression = await run_in_threadpool(suppression_of, engine, row["event"].get("userId"), source_id)
    suppressed = None if suppression is None else (
        f"userId is suppressed (regulation {suppression['regulation_id']}, since "
        f"{suppression['created_at']:%Y-%m-%d %H:%M} UTC): its later events are neither stored nor delivered")
    routed = routed_to(catalog, dests, row["event"], suppressed)
    deliveries = await run_in_threadpool(delivery.event_deliveries, engine, event_id)
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

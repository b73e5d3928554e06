"""A source's settings page: rename, disable/enable, rotate the write key, delete (typing the
name to confirm); and its event volume (events per hour over 7 days, by type) on the same page.

Changes go through ``server.api.service`` / ``server.store.workspace`` — the same code the admin
API's PATCH/DELETE /sources/{id} and POST /sources/{id}/rotate-write-key use.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import service
from server.errors import ApiError
from server.store import volume, workspace
from server.store.delivery import utcnow
from server.web import chart
from server.web.render import render
from server.web.sessions import form_of, page, redirect, web_error
from server.web.views_sources import load_source

VOLUME_HOURS = 7 * 24


def volume_data(engine, source_id: int) -> dict:
    points = volume.hourly_by_type(engine, source_id, utcnow(), VOLUME_HOURS)
    seen = [t for t in volume.TYPES if any(p[t] for p in points)]
    return {"points": points, "types": seen, "total": sum(p["total"] for p in points),
            "chart": chart.week_bars(points, seen or ["track"])}


@page
async def settings_page(request: Request) -> Response:
    source_id = request.path_params["id"]
    source = await load_source(request, source_id)
    if source is None:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    dests = await run_in_threadpool(workspace.list_destinations, request.app.state.engine, source_id)
    data = {"source": source, "destinations": len(dests),
            "volume": await run_in_threadpool(volume_data, request.app.state.engine, source_id)}
    return await render(request, "source_settings.html", data, title=f"Settings · {source['name']}")


async def _update(request: Request, body: dict, done: str) -> Response:
    source_id = request.path_params["id"]
    try:
        await run_in_threadpool(service.update_source, request.app.state.engine, source_id, body,
                                request.state.admin_user)
    except ApiError as exc:
        if exc.status == 404:
            return web_error(request, 404, "not_found", f"There is no source {source_id}.")
        return await redirect(request, f"/sources/{source_id}/settings", f"Not saved: {exc.message}", "error")
    return await redirect(request, f"/sources/{source_id}/settings", done)


@page
async def rename(request: Request) -> Response:
    name = str((await form_of(request)).get("name", "")).strip()
    return await _update(request, {"name": name}, f"Renamed the source to {name}.")


@page
async def set_enabled(request: Request) -> Response:
    enabled = (await form_of(request)).get("enabled") == "true"
    text = ("Enabled: the collector accepts this source's events again." if enabled else
            "Disabled: the collector refuses this source's events until you enable it again.")
    return await _update(request, {"enabled": enabled}, text)


@page
async def rotate_key(request: Request) -> Response:
    source_id = request.path_params["id"]
    try:
        await run_in_threadpool(workspace.rotate_write_key, request.app.state.engine, source_id,
                                actor=request.state.admin_user)
    except workspace.NotFound:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    return await redirect(request, f"/sources/{source_id}",
                          "New write key. The old one stopped working at once: update the snippet on your site.")


@page
async def delete(request: Request) -> Response:
    source_id = request.path_params["id"]
    source = await load_source(request, source_id)
    if source is None:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    typed = str((await form_of(request)).get("confirm_name", "")).strip()
    if typed != source["name"]:
        return await redirect(request, f"/sources/{source_id}/settings#delete",
                              f"Not deleted: type the source's name, {source['name']}, to confirm.", "error")
    try:
        await run_in_threadpool(lambda: workspace.delete_source(request.app.state.engine, source_id,
                                                               actor=request.state.admin_user))
    except workspace.NotFound:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    return await redirect(request, "/sources", f"Deleted the source {source['name']}, its destinations and history.")


def routes() -> list[Route]:
    return [
        Route("/sources/{id:int}/settings", settings_page, methods=["GET"]),
        Route("/sources/{id:int}/rename", rename, methods=["POST"]),
        Route("/sources/{id:int}/enabled", set_enabled, methods=["POST"]),
        Route("/sources/{id:int}/rotate-key", rotate_key, methods=["POST"]),
        Route("/sources/{id:int}/delete", delete, methods=["POST"]),
    ]

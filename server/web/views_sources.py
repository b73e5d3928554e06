"""Sources: the list, creating one, and a source's page (write key, snippet, destinations, bundle)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import service
from server.catalog import CONSENT_KEY
from server.errors import ApiError
from datetime import timedelta

from server.store import regulations, volume, workspace
from server.store.delivery import utcnow
from server import cdn
from server.web.render import render
from server.web.sessions import form_of, page, redirect, web_error


def destination_summary(catalog, dest: dict) -> dict:
    manifest = catalog.get(dest["slug"])
    return {
        "id": dest["id"],
        "slug": dest["slug"],
        "name": manifest.name if manifest else dest["slug"],
        "category": manifest.category if manifest else "",
        "mode": dest["mode"],
        "enabled": dest["enabled"],
        "url": f"/destinations/{dest['id']}",
        "settings": {CONSENT_KEY: (dest.get("settings") or {}).get(CONSENT_KEY) or []},  # for the badges
    }


async def load_source(request: Request, source_id: int) -> dict | None:
    try:
        return await run_in_threadpool(service.get_source, request.app.state.engine, source_id)
    except ApiError:
        return None


@page
async def sources_list(request: Request) -> Response:
    engine = request.app.state.engine
    rows = await run_in_threadpool(workspace.list_sources, engine)
    dests = await run_in_threadpool(workspace.list_destinations, engine)
    now = utcnow()
    day = await run_in_threadpool(volume.totals_since, engine, now - timedelta(hours=24))
    week = await run_in_threadpool(volume.totals_since, engine, now - timedelta(days=7))
    last = await run_in_threadpool(volume.last_received, engine)
    sources = []
    for row in rows:
        mine = [d for d in dests if d["source_id"] == row["id"]]
        sources.append({
            **service.source_json(row),
            "url": f"/sources/{row['id']}",
            "destinations": len(mine),
            "enabled_destinations": sum(1 for d in mine if d["enabled"]),
            "events_24h": day.get(row["id"], 0), "events_7d": week.get(row["id"], 0),
            "last_event_at": last[row["id"]].isoformat() if row["id"] in last else None,
            "volume_url": f"/sources/{row['id']}/settings#volume",
        })
    return await render(request, "sources.html", {"sources": sources, "error": None}, title="Sources")


@page
async def sources_create(request: Request) -> Response:
    form = await form_of(request)
    name = str(form.get("name", ""))
    try:
        created = await run_in_threadpool(
            service.create_source, request.app.state.engine, {"name": name}, request.state.admin_user
        )
    except ApiError as exc:
        return await redirect(request, "/sources", f"Source not created: {exc.message}", "error")
    return await redirect(request, f"/sources/{created['id']}", f"Created the source {created['name']}.")


@page
async def source_page(request: Request) -> Response:
    source_id = request.path_params["id"]
    source = await load_source(request, source_id)
    if source is None:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    engine, catalog, config = request.app.state.engine, request.app.state.catalog, request.app.state.config
    dests = await run_in_threadpool(workspace.list_destinations, engine, source_id)
    data = {
        "source": source,
        "snippet": await run_in_threadpool(cdn.snippet_html, config, source["write_key"], engine, catalog),
        "destinations": [destination_summary(catalog, d) for d in dests],
        "bundle": await cdn.bundle_info(request.app, source["write_key"]),
        # Events acknowledged but not stored: their userId is suppressed (docs/privacy.md).
        "suppressed_events": (await run_in_threadpool(regulations.suppressed_counts, engine)).get(source_id, 0),
        "links": {
            "history": f"/sources/{source_id}/history",
            "debugger": f"/sources/{source_id}/debugger",
            "catalog": f"/catalog?source={source_id}",
            "settings": f"/sources/{source_id}/settings",
        },
    }
    return await render(request, "source.html", data, title=source["name"])


async def _update_source(request: Request, change: dict, refused: str, done) -> Response:
    """One source setting from a form of the source's page: saved through the API's service (its
    checks), then back to the page with ``done(updated source)``, or ``refused`` and why."""
    source_id = request.path_params["id"]
    try:
        updated = await run_in_threadpool(service.update_source, request.app.state.engine, source_id, change,
                                          request.state.admin_user)
    except ApiError as exc:
        if exc.status == 404:
            return web_error(request, 404, "not_found", f"There is no source {source_id}.")
        return await redirect(request, f"/sources/{source_id}", f"{refused}: {exc.message}", "error")
    return await redirect(request, f"/sources/{source_id}", done(updated))


@page
async def source_library_name(request: Request) -> Response:
    """The "Library name" form: context.library.name of this source's bundle (server/api/library_name.py)."""
    form = await form_of(request)
    return await _update_source(
        request, {"library_name": str(form.get("library_name", ""))}, "Library name not saved",
        lambda s: f"Events from this source's bundle now say context.library.name = {s['library_name']}.")


@page
async def source_server_cookies(request: Request) -> Response:
    """The "Server-set cookies" form: whether this source's bundle has the collector set the
    visitor's id cookies (server/ingest/kept_cookies.py)."""
    form = await form_of(request)
    return await _update_source(
        request, {"server_cookies": form.get("server_cookies") == "on"}, "Not saved",
        lambda s: "The bundle now has the collector set the visitor's id cookies once a day." if s["server_cookies"]
        else "The bundle no longer asks the collector to set cookies.")


def routes() -> list[Route]:
    return [
        Route("/sources", sources_list, methods=["GET"]),
        Route("/sources", sources_create, methods=["POST"]),
        Route("/sources/{id:int}", source_page, methods=["GET"]),
        Route("/sources/{id:int}/library-name", source_library_name, methods=["POST"]),
        Route("/sources/{id:int}/server-cookies", source_server_cookies, methods=["POST"]),
    ]

"""The catalog and the add-destination flow, in Segment's documented order:

tile → summary page → Configure → choose the source → settings form → Save (created switched
off) → the destination page with its Enable toggle.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import service
from server.catalog import CATEGORIES, Manifest
from server.errors import ApiError
from server.store import workspace
from server.web.forms import field_errors, fields_for, parse_settings, typed_secrets
from server.web.render import render
from server.web.sessions import form_of, page, redirect, web_error

# The trio Segment recommends to a new source, and the entry we suggest for each.
RECOMMENDED = {"Analytics": "google_analytics_4", "Email Marketing": "mailchimp", "Live Chat": "intercom"}
MODE_TEXT = {
    "device": "Device mode: the vendor's script is loaded in the visitor's browser by your Switchboard bundle.",
    "cloud": "Cloud mode: Switchboard's server sends the events to the vendor's API; nothing extra loads in the browser.",
}


def tile(manifest: Manifest, source_id: int | None) -> dict[str, Any]:
    query = f"?source={source_id}" if source_id else ""
    return {
        "slug": manifest.slug, "name": manifest.name, "category": manifest.category,
        "modes": list(manifest.modes), "description": manifest.description,
        "url": f"/catalog/{manifest.slug}{query}",
        # Searched by the catalog filter: "Facebook" finds Meta Pixel, "GA4" Google Analytics 4.
        "search": " | ".join(manifest.search_terms).lower(),
    }


def _source_id(request: Request) -> int | None:
    raw = request.query_params.get("source", "")
    return int(raw) if raw.isdigit() else None


async def _source_or_none(request: Request, source_id: int | None) -> dict | None:
    if source_id is None:
        return None
    try:
        return await run_in_threadpool(service.get_source, request.app.state.engine, source_id)
    except ApiError:
        return None


@page
async def catalog_page(request: Request) -> Response:
    catalog, engine = request.app.state.catalog, request.app.state.engine
    source = await _source_or_none(request, _source_id(request))
    source_id = source["id"] if source else None
    recommended: list[dict[str, Any]] = []
    if source:
        dests = await run_in_threadpool(workspace.list_destinations, engine, source_id)
        have = {catalog.get(d["slug"]).category for d in dests if catalog.get(d["slug"])}
        if not have & set(RECOMMENDED):
            recommended = [tile(catalog.get(slug), source_id) for slug in RECOMMENDED.values() if catalog.get(slug)]
    data = {
        "source": source,
        "categories": [c for c in CATEGORIES if any(m.category == c for m in catalog)],
        "recommended": recommended,
        "destinations": [tile(m, source_id) for m in catalog],
    }
    return await render(request, "catalog.html", data, title="Catalog")


@page
async def summary_page(request: Request) -> Response:
    manifest = request.app.state.catalog.get(request.path_params["slug"])
    if manifest is None:
        return web_error(request, 404, "not_found", f"There is no destination {request.path_params['slug']!r} in the catalog.")
    source_id = _source_id(request)
    data = {
        "destination": {**tile(manifest, source_id), "website": manifest.website},
        "modes": [{"mode": m, "text": MODE_TEXT[m], "calls": list(manifest.methods[m])} for m in manifest.modes],
        "needs": [
            {"label": s.label, "modes": list(s.modes), "secret": s.secret}
            for s in manifest.settings if s.required
        ],
        "has_device_mode": "device" in manifest.modes,
        "configure_url": f"/catalog/{manifest.slug}/configure" + (f"?source={source_id}" if source_id else ""),
    }
    return await render(request, "summary.html", data, title=manifest.name)


async def _configure_data(request: Request, manifest: Manifest, source: dict | None, mode: str,
                          values=None, errors=None, typed: set[str] | None = None) -> dict[str, Any]:
    sources = await run_in_threadpool(workspace.list_sources, request.app.state.engine)
    return {
        "destination": tile(manifest, source["id"] if source else None),
        "sources": [{"id": s["id"], "name": s["name"]} for s in sources],
        "source": source,
        "mode": mode,
        "modes": list(manifest.modes),
        "fields": fields_for(manifest, mode, values, errors, typed_secrets=typed),
        "errors": errors or {},
    }


@page
async def configure_page(request: Request) -> Response:
    manifest = request.app.state.catalog.get(request.path_params["slug"])
    if manifest is None:
        return web_error(request, 404, "not_found", f"There is no destination {request.path_params['slug']!r} in the catalog.")
    source = await _source_or_none(request, _source_id(request))
    mode = request.query_params.get("mode", manifest.default_mode)
    if mode not in manifest.modes:
        mode = manifest.default_mode
    data = await _configure_data(request, manifest, source, mode)
    template = "configure.html" if source else "choose_source.html"
    return await render(request, template, data, title=f"Set up {manifest.name}")


@page
async def configure_save(request: Request) -> Response:
    manifest = request.app.state.catalog.get(request.path_params["slug"])
    if manifest is None:
        return web_error(request, 404, "not_found", f"There is no destination {request.path_params['slug']!r} in the catalog.")
    form = await form_of(request)
    source_raw = str(form.get("source", ""))
    source = await _source_or_none(request, int(source_raw) if source_raw.isdigit() else None)
    if source is None:
        return web_error(request, 422, "validation_error", "Choose an existing source for this destination.")
    mode = str(form.get("mode", manifest.default_mode))
    if mode not in manifest.modes:
        mode = manifest.default_mode
    settings = parse_settings(manifest, mode, form, updating=False)
    body = {"slug": manifest.slug, "mode": mode, "enabled": False,
            "settings": {k: v for k, v in settings.items() if v is not None}}
    try:
        created = await run_in_threadpool(
            service.add_destination, request.app.state.engine, request.app.state.catalog, source["id"], body,
            request.state.admin_user, allow_private_egress=request.app.state.config.allow_private_egress,
        )
    except ApiError as exc:
        errors = field_errors(exc.extra) or {"_form": exc.message}
        # Everything posted comes back, secrets the user just typed included: they would be lost
        # otherwise, and a second Save would create the destination without them.
        data = await _configure_data(request, manifest, source, mode, settings, errors,
                                     typed_secrets(manifest, settings))
        return await render(request, "configure.html", data, status=422, title=f"Set up {manifest.name}")
    return await redirect(
        request, f"/destinations/{created['id']}",
        f"Saved {manifest.name} on {source['name']}. It is switched off: turn on Enable to start sending data.",
    )


def routes() -> list[Route]:
    return [
        Route("/catalog", catalog_page, methods=["GET"]),
        Route("/catalog/{slug:str}", summary_page, methods=["GET"]),
        Route("/catalog/{slug:str}/configure", configure_page, methods=["GET"]),
        Route("/catalog/{slug:str}/configure", configure_save, methods=["POST"]),
    ]

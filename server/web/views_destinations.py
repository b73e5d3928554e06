"""A connected destination: settings, mode, the Enable toggle, delete, and (cloud mode) its
delivery overview, dead letters and Event Tester; for the warehouse, its syncs."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import service
from server.catalog import Manifest
from server.errors import ApiError
from server.store import workspace
from server import delivery, warehouse
from server.web import chart, tester
from server.web.forms import field_errors, fields_for, parse_settings, typed_secrets
from server.web.render import render
from server.web.sessions import form_of, page, redirect, web_error

SAMPLE_TYPES = ("track", "page", "identify", "group", "alias", "screen")


async def _load(request: Request) -> tuple[dict, Manifest, dict] | None:
    engine, catalog = request.app.state.engine, request.app.state.catalog
    try:
        dest = await run_in_threadpool(workspace.get_destination, engine, request.path_params["id"])
        source = await run_in_threadpool(workspace.get_source, engine, dest["source_id"])
    except workspace.NotFound:
        return None
    manifest = catalog.get(dest["slug"])
    if manifest is None:
        return None
    return dest, manifest, source


def _missing(request: Request) -> Response:
    return web_error(request, 404, "not_found", f"There is no destination {request.path_params['id']}.")


def destination_page(view: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A signed-in page about the destination in the path: ``view(request, dest, manifest,
    source)``, or a 404 when there is no such destination (the prologue every view here shared)."""

    @functools.wraps(view)
    async def load_then_view(request: Request) -> Response:
        loaded = await _load(request)
        if loaded is None:
            return _missing(request)
        return await view(request, *loaded)

    return page(load_then_view)


async def _page_data(request: Request, dest: dict, manifest: Manifest, source: dict,
                     values: dict | None = None, errors: dict | None = None,
                     typed: set[str] | None = None) -> dict[str, Any]:
    saved_secrets = {
        s.key for s in manifest.settings if s.secret and dest["settings"].get(s.key) not in (None, "", [], {})
    }
    is_warehouse = manifest.category == "Warehouses"
    cloud = dest["mode"] == "cloud" and not is_warehouse  # a warehouse is not delivered to by the worker
    data: dict[str, Any] = {
        "destination": service.destination_json(request.app.state.catalog, dest),
        "category": manifest.category,
        "source": {"id": source["id"], "name": source["name"], "url": f"/sources/{source['id']}"},
        "modes": list(manifest.modes),
        "calls": list(manifest.methods[dest["mode"]]),
        "fields": fields_for(manifest, dest["mode"], values if values is not None else dest["settings"],
                             errors, saved_secrets, every_mode=True, typed_secrets=typed),
        "errors": errors or {},
        "is_warehouse": is_warehouse,
        "delivery": await delivery.delivery_overview(request.app, dest) if cloud else None,
        "tester": {"available": cloud,
                   "types": [t for t in SAMPLE_TYPES if t in manifest.methods[dest["mode"]]]},
    }
    if data["delivery"] is not None:
        data["chart"] = chart.bars(data["delivery"]["series"])
        data["latency_chart"] = chart.line(data["delivery"]["latency_series"], "p50")
    if data["is_warehouse"]:
        data["syncs"] = await warehouse.warehouse_syncs(request.app, dest["id"])
    return data


@destination_page
async def show(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    from server.web.views_filters import filter_panel  # imports this module

    data = await _page_data(request, dest, manifest, source)
    data.update(await filter_panel(request, dest))
    return await render(request, "destination.html", data, title=f"{manifest.name} · {source['name']}")


def _browsers_by(max_age: int) -> str:
    # Browsers re-fetch the bundle when their cached copy expires (Cache-Control max-age).
    return "on their next page load" if max_age == 0 else f"within {max_age} s (the bundle's max-age)"


def _effect(dest: dict[str, Any], max_age: int, *, settings: bool = False) -> str:
    """What a change means for data, in the destination's mode (device: via the bundle)."""
    if dest["mode"] == "device":
        if settings:
            return f"Settings saved. Browsers get them with the next bundle, {_browsers_by(max_age)}."
        verb = "load it" if dest["enabled"] else "stop loading it"
        return f"Browsers {verb} with the next bundle, {_browsers_by(max_age)}."
    if settings:
        return "Settings saved. Delivery uses them for the next events it sends."
    return ("New events are delivered to it from now on." if dest["enabled"]
            else "No new events are delivered to it; queued ones are skipped.")


async def _update(request: Request, loaded: tuple[dict, Manifest, dict], body: dict[str, Any], done) -> Response:
    dest, manifest, source = loaded
    try:
        await run_in_threadpool(
            service.update_destination, request.app.state.engine, request.app.state.catalog, dest["id"], body,
            request.state.admin_user, allow_private_egress=request.app.state.config.allow_private_egress,
        )
    except ApiError as exc:
        if exc.status == 404:  # deleted meanwhile
            return _missing(request)
        errors = field_errors(exc.extra) or {"_form": exc.message}
        posted = body.get("settings", {})
        values = {**dest["settings"], **{k: v for k, v in posted.items() if v is not None}}
        # Secrets typed in this post are echoed back; stored ones (left empty) stay hidden.
        data = await _page_data(request, dest, manifest, source, values, errors, typed_secrets(manifest, posted))
        data["error"] = exc.message
        return await render(request, "destination.html", data, status=exc.status, title=f"{manifest.name} · {source['name']}")
    try:
        updated = await run_in_threadpool(workspace.get_destination, request.app.state.engine, dest["id"])
    except workspace.NotFound:  # deleted right after this change
        return _missing(request)
    return await redirect(request, f"/destinations/{dest['id']}", done(updated, request.app.state.config.bundle_max_age))


@destination_page
async def save_settings(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    form = await form_of(request)
    settings = parse_settings(manifest, dest["mode"], form, updating=True, every_mode=True)
    return await _update(request, (dest, manifest, source), {"settings": settings}, lambda d, age: _effect(d, age, settings=True))


@destination_page
async def set_enabled(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    enabled = (await form_of(request)).get("enabled") == "true"
    return await _update(request, (dest, manifest, source), {"enabled": enabled},
                         lambda d, age: ("Enabled. " if enabled else "Disabled. ") + _effect(d, age))


@destination_page
async def set_mode(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    mode = str((await form_of(request)).get("mode", ""))
    return await _update(request, (dest, manifest, source), {"mode": mode}, lambda d, age: f"Switched to {mode} mode.")


@destination_page
async def delete(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    await run_in_threadpool(
        service.delete_destination, request.app.state.engine, request.app.state.catalog, dest["id"],
        request.state.admin_user,
    )
    return await redirect(request, f"/sources/{source['id']}", f"Removed {manifest.name} from {source['name']}.")


@destination_page
async def test_event(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    call = str((await form_of(request)).get("type", "track"))
    if manifest.category == "Warehouses":
        return web_error(request, 409, "tester_unavailable",
                         "The Event Tester sends to a vendor's API; a warehouse loads the event log with Sync now.")
    if dest["mode"] != "cloud":
        return web_error(request, 409, "tester_unavailable",
                         "The Event Tester sends from this server, so it needs cloud mode.")
    if call not in manifest.methods["cloud"]:
        return web_error(request, 422, "validation_error", f"{manifest.name} does not take {call} calls in cloud mode.")
    data = await _page_data(request, dest, manifest, source)
    data["tester"]["chosen"] = call  # the next test sends the same type unless the user picks another
    data["test_result"] = await tester.send_sample(
        manifest, dest, call, allow_private_egress=request.app.state.config.allow_private_egress)
    return await render(request, "destination.html", data, title=f"{manifest.name} · {source['name']}")


@destination_page
async def replay(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    count = await delivery.replay_dead_letters(request.app, dest["id"], actor=request.state.admin_user)
    return await redirect(request, f"/destinations/{dest['id']}#delivery",
                          f"Queued {count} dead letter{'s' if count != 1 else ''} again; they are sent with the "
                          "current settings.")


@destination_page
async def dead_letter(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    """One dead letter: the event, the request sent and the vendor's answer, the error, every
    attempt — secrets masked."""
    detail = await delivery.dead_letter_detail(request.app, manifest, dest, request.path_params["job_id"])
    if detail is None:
        return web_error(request, 404, "not_found", f"There is no dead letter {request.path_params['job_id']} "
                                                    f"for this destination.")
    data = {"destination": service.destination_json(request.app.state.catalog, dest),
            "source": {"id": source["id"], "name": source["name"], "url": f"/sources/{source['id']}"},
            "job": detail}
    return await render(request, "dead_letter.html", data, title=f"Dead letter {detail['id']} · {manifest.name}")


@destination_page
async def sync_now(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    if manifest.category != "Warehouses":
        return web_error(request, 409, "not_a_warehouse", "Only warehouse destinations sync.")
    reload = (await form_of(request)).get("reload_skipped") == "1"  # "Re-load skipped events"
    sync = await warehouse.sync_now(request.app, dest["id"], actor=request.state.admin_user, reload=reload)
    text = (f"Sync failed: {sync['error']}" if sync["error"]
            else f"Synced {sync['events']} event{'s' if sync['events'] != 1 else ''}."
            + (f" Skipped {sync['skipped']} the warehouse refused." if sync["skipped"] else ""))
    if reload and not sync["error"]:
        text = "Re-loaded the skipped events. " + text
    return await redirect(request, f"/destinations/{dest['id']}#syncs", text, "error" if sync["error"] else "ok")


def routes() -> list[Route]:
    return [
        Route("/destinations/{id:int}", show, methods=["GET"]),
        Route("/destinations/{id:int}/settings", save_settings, methods=["POST"]),
        Route("/destinations/{id:int}/enabled", set_enabled, methods=["POST"]),
        Route("/destinations/{id:int}/mode", set_mode, methods=["POST"]),
        Route("/destinations/{id:int}/delete", delete, methods=["POST"]),
        Route("/destinations/{id:int}/test", test_event, methods=["POST"]),
        Route("/destinations/{id:int}/replay", replay, methods=["POST"]),
        Route("/destinations/{id:int}/sync", sync_now, methods=["POST"]),
        Route("/destinations/{id:int}/dead-letters/{job_id:int}", dead_letter, methods=["GET"]),
    ]

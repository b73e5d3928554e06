"""Alerts pages: the rules with their state (ok or firing), a form to create and edit them, and
each rule's history of firings and resolutions with whether the notification went out.

The forms take the API's fields and go through the same validation (``server.api.alerts``);
the evaluation itself runs in the worker processes (``server/alerts``, docs/alerts.md).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import alerts as service
from server.errors import ApiError
from server.store import alerts as store
from server.store import workspace
from server.web.render import render
from server.web.sessions import form_of, page, redirect, web_error

KIND_LABELS = {
    "failure_rate": "Delivery failure rate over N % (destination)",
    "dead_letters": "Dead letters appearing (destination)",
    "delivery_lag": "Delivery lag: oldest undelivered job over N seconds (destination)",
    "no_events": "No events for the window (source)",
}


def _choices(engine, catalog) -> dict[str, Any]:
    sources = {s["id"]: s["name"] for s in workspace.list_sources(engine)}
    destinations = []
    for d in workspace.list_destinations(engine):
        manifest = catalog.get(d["slug"])
        name = d.get("label") or (manifest.name if manifest else d["slug"])
        destinations.append({"id": d["id"], "slug": d["slug"],
                             "label": f"{sources.get(d['source_id'], '?')} → {name} (#{d['id']})"})
    return {
        "sources": [{"id": i, "label": f"{n} (#{i})"} for i, n in sources.items()],
        "destinations": destinations,
        "channels": [d for d in destinations if d["slug"] in service.NOTIFY_SLUGS],
        "kinds": KIND_LABELS,
    }


def _body(form: FormData, editing: bool) -> dict[str, Any]:
    """The API body a form stands for; numbers that do not parse stay text (the validation names them)."""

    def number(name: str) -> Any:
        raw = str(form.get(name, "")).strip()
        try:
            return float(raw) if raw else None
        except ValueError:
            return raw

    def ident(name: str) -> Any:
        raw = str(form.get(name, "")).strip()
        return int(raw) if raw.isdigit() and len(raw) < 18 else (raw or None)

    kind = str(form.get("kind", ""))
    body: dict[str, Any] = {"name": str(form.get("name", "")), "kind": kind,
                            "window_minutes": number("window_minutes")}
    if kind == "no_events":
        body["source_id"] = ident("source_id")
    else:
        body["destination_id"] = ident("destination_id")
    if kind != "no_events":
        body["threshold"] = number("threshold")
    channel = str(form.get("channel", ""))
    if channel == "email":
        body["notify"] = {"email": str(form.get("email", ""))}
    else:
        body["notify"] = {"destination_id": ident("channel")}
    if editing:
        body["enabled"] = form.get("enabled") == "on"
    return body


@page
async def alerts_page(request: Request) -> Response:
    engine, catalog = request.app.state.engine, request.app.state.catalog
    rules = [service.public(r) for r in await run_in_threadpool(store.list_rules, engine)]
    choices = await run_in_threadpool(_choices, engine, catalog)
    return await render(request, "alerts.html", {"rules": rules, **choices}, title="Alerts")


@page
async def alerts_create(request: Request) -> Response:
    form = await form_of(request)
    try:
        rule = await run_in_threadpool(lambda: service.create(
            request.app.state.engine, _body(form, False), actor=request.state.admin_user))
    except ApiError as exc:
        return await redirect(request, "/alerts", f"Alert rule not created: {exc.message}", "error")
    return await redirect(request, f"/alerts/{rule['id']}", f"Created alert rule “{rule['name']}”.")


@page
async def alert_page(request: Request) -> Response:
    engine, catalog = request.app.state.engine, request.app.state.catalog
    rule_id = request.path_params["id"]
    rule = await run_in_threadpool(store.get_rule, engine, rule_id)
    if rule is None:
        return web_error(request, 404, "not_found", f"No alert rule {rule_id}")
    history = [service.public_event(e) for e in await run_in_threadpool(store.history, engine, rule_id, 200)]
    choices = await run_in_threadpool(_choices, engine, catalog)
    data = {"rule": service.public(rule), "history": history, **choices}
    return await render(request, "alert.html", data, title=f"Alert: {rule['name']}")


@page
async def alert_update(request: Request) -> Response:
    rule_id = request.path_params["id"]
    form = await form_of(request)
    try:
        rule = await run_in_threadpool(lambda: service.change(
            request.app.state.engine, rule_id, _body(form, True), actor=request.state.admin_user))
    except ApiError as exc:
        return await redirect(request, f"/alerts/{rule_id}", f"Not saved: {exc.message}", "error")
    if rule is None:
        return web_error(request, 404, "not_found", f"No alert rule {rule_id}")
    return await redirect(request, f"/alerts/{rule_id}", "Saved.")


@page
async def alert_delete(request: Request) -> Response:
    rule_id = request.path_params["id"]
    if not await run_in_threadpool(
            lambda: store.delete_rule(request.app.state.engine, rule_id, actor=request.state.admin_user)):
        return web_error(request, 404, "not_found", f"No alert rule {rule_id}")
    return await redirect(request, "/alerts", "Alert rule deleted.")


def routes() -> list[Route]:
    return [
        Route("/alerts", alerts_page, methods=["GET"]),
        Route("/alerts", alerts_create, methods=["POST"]),
        Route("/alerts/{id:int}", alert_page, methods=["GET"]),
        Route("/alerts/{id:int}", alert_update, methods=["POST"]),
        Route("/alerts/{id:int}/delete", alert_delete, methods=["POST"]),
    ]

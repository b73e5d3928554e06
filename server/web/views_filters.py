"""The destination page's Filters and History replay sections (docs/filters.md, docs/delivery.md):
add, move and delete filters, preview them over the source's last 50 stored events (which would
be dropped or changed, and how), and start a history replay with a time range."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import delivery
from server.api import filters as filter_service
from server.catalog import Manifest
from server.errors import ApiError
from server.rules import FILTER_ACTIONS, FilterError, apply_filters, check_filters
from server.store import events, workspace
from server.web.render import render
from server.web.sessions import form_of, redirect
from server.web.views_destinations import _missing, _page_data, destination_page

PREVIEW_EVENTS = 50
ACTION_LABELS = {
    "drop": "Drop the event", "only": "Only send matching events", "drop_properties": "Drop fields",
    "allow_properties": "Only keep fields", "sample": "Send a sample (percent)",
}


def _preview(rows: list[dict[str, Any]], filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        event = row["event"]
        sent, notes = apply_filters(event, filters)
        outcome = "dropped" if sent is None else "changed" if sent != event else "sent"
        out.append({"id": row["id"], "type": row["type"], "received_at": row["received_at"].isoformat(),
                    "name": str(event.get("event") or event.get("name") or event.get("userId") or ""),
                    "outcome": outcome, "how": "; ".join(notes)})
    return out


async def filter_panel(request: Request, dest: dict[str, Any], candidate: list[dict[str, Any]] | None = None
                       ) -> dict[str, Any]:
    """The page data of both sections (merged into the destination page's data)."""
    engine = request.app.state.engine
    rows = await run_in_threadpool(events.list_events, engine, dest["source_id"], limit=PREVIEW_EVENTS)
    preview = _preview(rows, candidate if candidate is not None else dest["filters"])
    cloud = dest["mode"] == "cloud"
    return {
        "filters": dest["filters"], "filter_actions": ACTION_LABELS,
        "filter_preview": preview, "filter_preview_candidate": candidate is not None,
        "filter_preview_counts": {k: sum(p["outcome"] == k for p in preview) for k in ("sent", "changed", "dropped")},
        "replays": await run_in_threadpool(delivery.history_replays, engine, dest["id"]) if cloud else [],
        "replay_rate": request.app.state.config.replay_rate,
    }


def _filter_from(form) -> dict[str, Any]:
    item: dict[str, Any] = {"if": str(form.get("if", "")), "action": str(form.get("action", ""))}
    if item["action"] in ("drop_properties", "allow_properties"):
        text = str(form.get("fields", "")).replace(",", "\n")
        item["fields"] = [f.strip() for f in text.splitlines() if f.strip()]
    if item["action"] == "sample":
        try:
            item["percent"] = float(str(form.get("percent", "")))
        except ValueError:
            item["percent"] = None
    return item


async def _page_with(request: Request, dest, manifest, source, *, status: int = 200, error: str | None = None,
                     candidate=None, form_values=None) -> Response:
    data = await _page_data(request, dest, manifest, source)
    data.update(await filter_panel(request, dest, candidate))
    data["filter_form"] = form_values or {}
    if error:
        data["filter_error"] = error
    return await render(request, "destination.html", data, status=status, title=f"{manifest.name} · {source['name']}")


@destination_page
async def add_filter(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    form = await form_of(request)
    item = _filter_from(form)
    values = {k: str(form.get(k, "")) for k in ("if", "action", "fields", "percent")}
    if form.get("preview"):
        try:
            candidate = check_filters([*dest["filters"], item])
        except FilterError as exc:
            return await _page_with(request, dest, manifest, source, status=422, error=_message(exc),
                                    form_values=values)
        return await _page_with(request, dest, manifest, source, candidate=candidate, form_values=values)
    try:
        await run_in_threadpool(filter_service.add_filter, request.app.state.engine, request.app.state.catalog,
                                dest["id"], item, request.state.admin_user)
    except ApiError as exc:
        if exc.status == 404:  # deleted meanwhile
            return _missing(request)
        return await _page_with(request, dest, manifest, source, status=exc.status, error=exc.message,
                                form_values=values)
    return await redirect(request, f"/destinations/{dest['id']}#filters", "Filter added. " + _effect(dest))


def _message(exc: FilterError) -> str:
    where = f" (at character {exc.position})" if exc.position is not None else ""
    return f"{exc.message}{where}"


def _effect(dest: dict) -> str:
    if dest["mode"] == "device":
        return "Browsers apply it with the next bundle."
    return "Delivery applies it to the next events."


@destination_page
async def change_filter(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    """Move a filter up or down (``move=up|down``) or delete it (``delete=1``)."""
    form = await form_of(request)
    index, filters = request.path_params["n"], list(dest["filters"])
    if not 0 <= index < len(filters):
        return await redirect(request, f"/destinations/{dest['id']}#filters", "No such filter.", "error")
    engine, catalog, actor = request.app.state.engine, request.app.state.catalog, request.state.admin_user
    # Both act on the list as read for this request: if it changed before the write, nothing
    # is written (a move or delete by index could hit another filter by then).
    try:
        if form.get("delete"):
            await run_in_threadpool(filter_service.delete_filter, engine, catalog, dest["id"], index, actor,
                                    list(dest["filters"]))
            return await redirect(request, f"/destinations/{dest['id']}#filters", "Filter deleted. " + _effect(dest))
        other = index - 1 if form.get("move") == "up" else index + 1
        if 0 <= other < len(filters):
            filters[index], filters[other] = filters[other], filters[index]
            await run_in_threadpool(filter_service.set_filters, engine, catalog, dest["id"], filters, actor,
                                    "reordered", list(dest["filters"]))
    except workspace.Changed:
        return await redirect(request, f"/destinations/{dest['id']}#filters",
                              "The filters changed meanwhile; nothing was moved. Look at them again.", "error")
    except ApiError as exc:
        return await redirect(request, f"/destinations/{dest['id']}#filters", exc.message, "error")
    return await redirect(request, f"/destinations/{dest['id']}#filters", "Filters reordered. " + _effect(dest))


def _when(value: Any) -> datetime | None:
    """A datetime-local field (taken as UTC) or an ISO time; None when empty."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid_time", f"{text!r} is not a time such as 2026-01-02T03:04") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@destination_page
async def history_replay(request: Request, dest: dict, manifest: Manifest, source: dict) -> Response:
    form = await form_of(request)
    state = request.app.state
    try:
        since, until = _when(form.get("since")), _when(form.get("until"))
        result = await run_in_threadpool(lambda: delivery.start_replay(
            state.engine, state.catalog, dest["id"], since=since, until=until, rate=state.config.replay_rate,
            actor=request.state.admin_user))
    except ApiError as exc:
        return await redirect(request, f"/destinations/{dest['id']}#replay", f"Not replayed: {exc.message}", "error")
    n = result["queued"]
    return await redirect(request, f"/destinations/{dest['id']}#replay",
                          f"Replay {result['replay_id']}: queued {n} stored event{'s' if n != 1 else ''}, released at "
                          f"up to {state.config.replay_rate:g} a second"
                          f"{' (the rest is queued as it goes)' if result['state'] == 'queuing' else ''}.")


def routes() -> list[Route]:
    return [
        Route("/destinations/{id:int}/filters", add_filter, methods=["POST"]),
        Route("/destinations/{id:int}/filters/{n:int}", change_filter, methods=["POST"]),
        Route("/destinations/{id:int}/history-replay", history_replay, methods=["POST"]),
    ]


__all__ = ["routes", "filter_panel", "FILTER_ACTIONS"]

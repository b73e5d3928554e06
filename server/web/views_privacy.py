"""Privacy pages: regulations (create, list, status), the governance log, and the store's disk
use and retention settings. The regulation form takes the same fields as the REST API and is
validated by the same code (``server.api.regulations``)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import regulations as service
from server.errors import ApiError
from server.store import disk, governance, regulations, workspace
from server.web.render import render
from server.web.sessions import form_of, page, redirect


def _user_ids(text: str) -> list[str]:
    """One userId per line, exactly as typed (lines of only spaces dropped). Not split at commas
    nor trimmed: "Smith, Ann" is one user, and erasing "Smith" and "Ann" instead would delete
    two other people's data; the API and the CLI take ids as given too."""
    return [line for line in text.splitlines() if line.strip()]


@page
async def privacy_page(request: Request) -> Response:
    engine, config = request.app.state.engine, request.app.state.config
    data = {
        "regulations": await run_in_threadpool(regulations.list_regulations, engine, limit=100),
        "sources": [{"id": s["id"], "name": s["name"]} for s in await run_in_threadpool(workspace.list_sources, engine)],
        "usage": await run_in_threadpool(disk.usage, engine),
        "retention": {"event_days": config.event_retention_days, "dead_letter_days": config.dead_letter_retention_days},
        "types": list(regulations.TYPES),
    }
    return await render(request, "privacy.html", data, title="Privacy")


@page
async def privacy_create(request: Request) -> Response:
    form = await form_of(request)
    body: dict = {"type": str(form.get("type", "")), "user_ids": _user_ids(str(form.get("user_ids", "")))}
    source = str(form.get("source", "") or "")
    if source:
        body["source_ids"] = [int(source)] if source.isdigit() else [source]
    try:
        created = await run_in_threadpool(service.create, request.app.state.engine, body, request.state.admin_user)
    except ApiError as exc:
        return await redirect(request, "/privacy", f"Regulation not created: {exc.message}", "error")
    return await redirect(request, "/privacy", f"Created regulation {created['id']} ({created['type']}, "
                                               f"{len(created['user_ids'])} users): {created['status']}.")


@page
async def governance_page(request: Request) -> Response:
    action = request.query_params.get("action") or None
    entries = await run_in_threadpool(governance.list_entries, request.app.state.engine, action=action, limit=200)
    return await render(request, "governance.html", {"entries": entries, "action": action}, title="Governance log")


def routes() -> list[Route]:
    return [
        Route("/privacy", privacy_page, methods=["GET"]),
        Route("/privacy", privacy_create, methods=["POST"]),
        Route("/governance", governance_page, methods=["GET"]),
    ]

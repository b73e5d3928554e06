"""Settings history of a source: every version, a diff between two, and Roll back.

Versions are shown as the admin API returns them (``service.version_json``: secrets masked),
so a diff can say that a secret changed without ever showing it.
"""

from __future__ import annotations

import difflib
import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import service
from server.store import workspace
from server.web.render import render
from server.web.sessions import page, redirect, web_error


def _content_lines(version: dict) -> list[str]:
    return json.dumps(version["content"], indent=2, sort_keys=True).splitlines()


def diff_lines(older: dict, newer: dict) -> list[dict[str, str]]:
    """A unified diff of two versions' masked content, as (kind, text) rows for the page."""
    rows = []
    diff = difflib.unified_diff(
        _content_lines(older), _content_lines(newer),
        f"version {older['version']}", f"version {newer['version']}", lineterm="", n=3,
    )
    for line in diff:
        kind = "meta" if line.startswith(("---", "+++", "@@")) else {"+": "add", "-": "del"}.get(line[:1], "same")
        rows.append({"kind": kind, "text": line})
    return rows


async def _versions(request: Request, source_id: int) -> list[dict] | None:
    try:
        rows = await run_in_threadpool(workspace.list_versions, request.app.state.engine, source_id)
    except workspace.NotFound:
        return None
    return [service.version_json(request.app.state.catalog, source_id, r) for r in rows]


@page
async def history_page(request: Request) -> Response:
    source_id = request.path_params["id"]
    versions = await _versions(request, source_id)
    if versions is None:
        return web_error(request, 404, "not_found", f"There is no source {source_id}.")
    source = await run_in_threadpool(service.get_source, request.app.state.engine, source_id)
    data = {"source": source, "current": source["settings_version"], "versions": versions}
    return await render(request, "history.html", data, title=f"History · {source['name']}")


@page
async def diff_page(request: Request) -> Response:
    source_id = request.path_params["id"]
    engine, catalog = request.app.state.engine, request.app.state.catalog
    try:
        source = await run_in_threadpool(service.get_source, engine, source_id)
        a, b = int(request.query_params.get("a", "")), int(request.query_params.get("b", ""))
        older, newer = sorted([a, b])
        versions = [
            service.version_json(catalog, source_id, await run_in_threadpool(workspace.get_version, engine, source_id, n))
            for n in (older, newer)
        ]
    except ValueError:
        return web_error(request, 400, "bad_request", "Choose two versions to compare (?a=…&b=…).")
    except Exception as exc:  # NotFound from the store, ApiError from the service
        if isinstance(exc, workspace.NotFound) or getattr(exc, "status", None) == 404:
            return web_error(request, 404, "not_found", f"No such source or version: {exc}")
        raise
    data = {
        "source": source,
        "older": {k: versions[0][k] for k in ("version", "created_at", "actor", "summary")},
        "newer": {k: versions[1][k] for k in ("version", "created_at", "actor", "summary")},
        "lines": diff_lines(versions[0], versions[1]),
    }
    return await render(request, "diff.html", data, title=f"Diff · {source['name']}")


@page
async def rollback(request: Request) -> Response:
    source_id, number = request.path_params["id"], request.path_params["n"]
    try:
        new_version = await run_in_threadpool(
            workspace.rollback, request.app.state.engine, source_id, number, actor=request.state.admin_user
        )
    except workspace.NotFound as exc:
        return web_error(request, 404, "not_found", f"No {exc.args[0]}.")
    return await redirect(
        request, f"/sources/{source_id}/history",
        f"Rolled back to version {number}: it is now current as version {new_version}, and the next bundle uses it.",
    )


def routes() -> list[Route]:
    return [
        Route("/sources/{id:int}/history", history_page, methods=["GET"]),
        Route("/sources/{id:int}/history/diff", diff_page, methods=["GET"]),
        Route("/sources/{id:int}/history/{n:int}/rollback", rollback, methods=["POST"]),
    ]

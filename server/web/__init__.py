"""The web plane: the server-rendered web app for people (sign-in, sources, catalog, the
add-destination flow, settings history, debugger, delivery overview, privacy, the
governance log, the audit log and alerts) and its static files.

Every page wears ``sessions.page`` (signed-in session required, CSRF on POST) and answers
``?format=json`` with the data it shows (``render.render``).

The door: ``routes`` and ``admin_lines`` (the web account's first-run lines the CLI prints).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from server.web import (
    views_alerts, views_api_docs, views_audit, views_auth, views_catalog, views_debugger, views_destinations,
    views_filters, views_history, views_privacy, views_source_settings, views_sources, views_users,
)
from server.web.assets import STATIC, Assets, JsonRangeErrors
from server.web.security_headers import NoSniff
from server.web.accounts import admin_lines, prepare as prepare_sign_in
from server.web.sessions import page, redirect

__all__ = ["routes", "admin_lines"]

@page
async def home(request: Request) -> Response:
    return await redirect(request, "/sources")


def routes(config) -> list[BaseRoute]:
    prepare_sign_in()  # its dummy hash, before the first request
    return [
        Route("/", home, methods=["GET"]),
        *views_auth.routes(),
        *views_sources.routes(),
        *views_source_settings.routes(),
        *views_history.routes(),
        *views_debugger.routes(),
        *views_catalog.routes(),
        *views_destinations.routes(),
        *views_privacy.routes(),
        *views_audit.routes(),
        *views_filters.routes(),
        *views_users.routes(),
        *views_alerts.routes(),
        *views_api_docs.routes(),
        Mount("/static", app=NoSniff(JsonRangeErrors(Assets(directory=STATIC, check_dir=False))), name="static"),
    ]

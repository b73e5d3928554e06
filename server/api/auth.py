"""Bearer-token authentication for the admin API.

``@admin_endpoint`` wraps an async endpoint: no valid ``Authorization: Bearer <token>`` → 401
before the endpoint runs. Every admin route must use it; tests/test_admin_api.py walks the
app's routes and fails on any /api/ route that answers without a token.
"""

from __future__ import annotations

import functools
from typing import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server.errors import ApiError
from server.store import tokens

Endpoint = Callable[[Request], Awaitable[Response]]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def is_admin(request: Request) -> bool:
    # A signed-in web app session counts too (the web app calls the same API from the page).
    session_user = getattr(request.state, "admin_user", None)
    if session_user:
        return True
    token = bearer_token(request)
    if not token:
        return False
    app = request.app
    return await run_in_threadpool(tokens.check_token, app.state.engine, token, app.state.config.admin_token)


def admin_endpoint(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        if not await is_admin(request):
            raise ApiError(
                401, "unauthorized", "Send an admin token: Authorization: Bearer <token> (switchboard tokens create)",
                headers={"WWW-Authenticate": 'Bearer realm="switchboard"'},
            )
        return await endpoint(request)

    guarded.requires_admin = True  # type: ignore[attr-defined]
    return guarded


def actor(request: Request) -> str:
    return getattr(request.state, "admin_user", None) or "api"

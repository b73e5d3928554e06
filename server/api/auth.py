"""Authentication and roles for the admin API — the one place where the role rule lives.

``@admin_endpoint`` wraps an async endpoint: no valid ``Authorization: Bearer <token>`` (or
signed-in web session) → 401 before the endpoint runs; a role below the route's → 403
``forbidden``. The rule (``required_role``): reads (GET/HEAD) need ``viewer``, every other method
``editor``, unless the endpoint carries ``@requires(role)`` (users and tokens: ``owner``). The web
app's ``@page`` guard applies the same rule. tests/test_admin_api.py walks the app's routes and
fails on any /api/ route that answers without a token; tests/test_roles_matrix.py walks them ×
every role.

The principal is put on ``request.state``: ``admin_user`` (session user name), ``actor`` (what the
logs record: the user name, ``token:<name>``, or ``api`` for the bootstrap token) and ``role``.
"""

from __future__ import annotations

import functools
from typing import Awaitable, Callable, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from server.errors import ApiError
from server.store import tokens

Endpoint = Callable[[Request], Awaitable[Response]]
F = TypeVar("F")

ROLES = tokens.ROLES  # viewer < editor < owner
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def requires(role: str) -> Callable[[F], F]:
    """Override the method rule for one endpoint: ``@requires("owner")`` under ``@admin_endpoint``
    (or ``@page``)."""
    if role not in ROLES:
        raise ValueError(role)

    def mark(endpoint: F) -> F:
        endpoint.required_role = role  # type: ignore[attr-defined]
        return endpoint

    return mark


def required_role(endpoint: object, method: str) -> str:
    """The role a request needs: the endpoint's ``@requires`` or, by default, by HTTP method."""
    return getattr(endpoint, "required_role", None) or ("viewer" if method.upper() in READS else "editor")


def allows(role: str | None, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def authenticate(request: Request) -> str | None:
    """Set actor and role on ``request.state`` and return the role; None when unauthenticated."""
    # A signed-in web app session counts too (the web app calls the same API from the page).
    session_user = getattr(request.state, "admin_user", None)
    if session_user:
        request.state.actor = session_user
        request.state.role = getattr(request.state, "role", None) or "viewer"
        return request.state.role
    token = bearer_token(request)
    if not token:
        return None
    app = request.app
    found = await run_in_threadpool(tokens.find_token, app.state.engine, token, app.state.config.admin_token)
    if found is None:
        return None
    request.state.actor = tokens.actor_of(found)
    request.state.role = found["role"]
    return found["role"]


async def is_admin(request: Request) -> bool:
    return await authenticate(request) is not None


def forbidden(role: str | None, needed: str) -> ApiError:
    return ApiError(403, "forbidden", f"This needs the {needed} role; you have the {role} role.")


def admin_endpoint(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        role = await authenticate(request)
        if role is None:
            raise ApiError(
                401, "unauthorized", "Send an admin token: Authorization: Bearer <token> (switchboard tokens create)",
                headers={"WWW-Authenticate": 'Bearer realm="switchboard"'},
            )
        needed = required_role(endpoint, request.method)
        if not allows(role, needed):
            raise forbidden(role, needed)
        return await endpoint(request)

    guarded.requires_admin = True  # type: ignore[attr-defined]
    return guarded


def actor(request: Request) -> str:
    """Who made this request, readable: the user name, ``token:<name>``, or ``api``."""
    return getattr(request.state, "actor", None) or getattr(request.state, "admin_user", None) or "api"


def role(request: Request) -> str | None:
    return getattr(request.state, "role", None)

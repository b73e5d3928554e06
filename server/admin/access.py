"""Users, roles and scoped tokens under /api/v1 (issue #17).

Users and tokens are the owner's: every route here wears ``@requires("owner")`` except
``/me`` (who am I), which every role may read. A user changes their own password on the web
app's /account page (``server.web.views_users``): the API is for tokens, which have none. The role rule itself
lives in ``server.api.auth``; nothing here checks a role by hand.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import users
from server.api.auth import actor, admin_endpoint, requires, role
from server.api.body import read_json
from server.api.openapi import answers
from server.errors import json_response


def _engine(request: Request):
    return request.app.state.engine


@admin_endpoint
@requires("owner")
async def users_list(request: Request) -> Response:
    """List users: id, username, role, created (never a password)."""
    return json_response({"users": await run_in_threadpool(users.list_users, _engine(request))})


@admin_endpoint
@requires("owner")
@answers(201)
async def users_create(request: Request) -> Response:
    """Invite a user: {"username", "password", "role"} → 201 (role defaults to viewer)."""
    body = await read_json(request)
    return json_response(await run_in_threadpool(lambda: users.create_user(_engine(request), body, actor=actor(request))), 201)


@admin_endpoint
@requires("owner")
async def user_get(request: Request) -> Response:
    """One user."""
    return json_response(await run_in_threadpool(users.get_user, _engine(request), request.path_params["username"]))


@admin_endpoint
@requires("owner")
async def user_patch(request: Request) -> Response:
    """Change a user's role and/or set a new password (the reset): {"role"?, "password"?}."""
    body = await read_json(request)
    return json_response(
        await run_in_threadpool(lambda: users.update_user(_engine(request), request.path_params["username"], body, actor=actor(request))))


@admin_endpoint
@requires("owner")
@answers(204)
async def user_delete(request: Request) -> Response:
    """Delete a user (409 last_owner for the only owner); their sessions end."""
    await run_in_threadpool(lambda: users.delete_user(_engine(request), request.path_params["username"], actor=actor(request)))
    return Response(status_code=204)


@admin_endpoint
@requires("viewer")
async def me(request: Request) -> Response:
    """Who this request is: {"actor", "role"}."""
    return json_response({"actor": actor(request), "role": role(request)})


@admin_endpoint
@requires("owner")
async def tokens_list(request: Request) -> Response:
    """List tokens: id, name, role, created, last_used (never the token)."""
    return json_response({"tokens": await run_in_threadpool(users.list_tokens, _engine(request))})


@admin_endpoint
@requires("owner")
@answers(201)
async def tokens_create(request: Request) -> Response:
    """Create a token: {"name", "role"} → 201 {"id", "name", "role", "token"} (shown once; role defaults to viewer)."""
    body = await read_json(request)
    return json_response(await run_in_threadpool(lambda: users.create_token(_engine(request), body, actor=actor(request))), 201)


@admin_endpoint
@requires("owner")
@answers(204)
async def token_delete(request: Request) -> Response:
    """Revoke a token: it answers 401 from now on, on every server."""
    await run_in_threadpool(lambda: users.revoke_token(_engine(request), request.path_params["id"], actor=actor(request)))
    return Response(status_code=204)


def routes(config) -> list[Route]:
    return [
        Route("/api/v1/users", users_list, methods=["GET"]),
        Route("/api/v1/users", users_create, methods=["POST"]),
        Route("/api/v1/users/{username:str}", user_get, methods=["GET"]),
        Route("/api/v1/users/{username:str}", user_patch, methods=["PATCH"]),
        Route("/api/v1/users/{username:str}", user_delete, methods=["DELETE"]),
        Route("/api/v1/me", me, methods=["GET"]),
        Route("/api/v1/tokens", tokens_list, methods=["GET"]),
        Route("/api/v1/tokens", tokens_create, methods=["POST"]),
        Route("/api/v1/tokens/{id:int}", token_delete, methods=["DELETE"]),
    ]

"""Users, tokens and "my account" pages (issue #17). Users and tokens are the owner's
(``@requires("owner")``); every signed-in role may change its own password on /account. The
pages call the same validated code as the REST API and the CLI (``server.api.users``).

A new token is shown once, on the page that answers its creation (not in a flash message, which
would put it in the cookie)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import users
from server.api.auth import requires
from server.errors import ApiError
from server.web.render import render
from server.web.sessions import form_of, page, redirect


def _engine(request: Request):
    return request.app.state.engine


@page
@requires("owner")
async def users_page(request: Request) -> Response:
    data = {"users": await run_in_threadpool(users.list_users, _engine(request)), "roles": list(users.ROLES)}
    return await render(request, "users.html", data, title="Users")


@page
@requires("owner")
async def users_invite(request: Request) -> Response:
    form = await form_of(request)
    body = {k: str(form.get(k, "")) for k in ("username", "password", "role")}
    try:
        made = await run_in_threadpool(lambda: users.create_user(_engine(request), body, actor=request.state.admin_user))
    except ApiError as exc:
        return await redirect(request, "/users", f"User not created: {exc.message}", "error")
    return await redirect(request, "/users", f"Created {made['username']} ({made['role']}). Give them their "
                                             "password; they can change it under My account.")


@page
@requires("owner")
async def user_change(request: Request) -> Response:
    """One form per user row: a new role, a new password (the reset), or delete."""
    form, username = await form_of(request), request.path_params["username"]
    action = str(form.get("action", ""))
    try:
        if action == "delete":
            await run_in_threadpool(lambda: users.delete_user(_engine(request), username, actor=request.state.admin_user))
            return await redirect(request, "/users", f"Deleted {username}; they are signed out.")
        body = {"role": str(form.get("role", ""))} if action == "role" else {"password": str(form.get("password", ""))}
        await run_in_threadpool(lambda: users.update_user(_engine(request), username, body, actor=request.state.admin_user))
    except ApiError as exc:
        return await redirect(request, "/users", f"{username} not changed: {exc.message}", "error")
    done = f"{username} is now {body['role']}." if action == "role" else f"New password set for {username}."
    return await redirect(request, "/users", done)


async def _tokens_page(request: Request, created: dict | None = None, status: int = 200) -> Response:
    data = {"tokens": await run_in_threadpool(users.list_tokens, _engine(request)), "roles": list(users.ROLES)}
    return await render(request, "tokens.html", data, title="API tokens", created=created, status=status)


@page
@requires("owner")
async def tokens_page(request: Request) -> Response:
    return await _tokens_page(request)


@page
@requires("owner")
async def tokens_create(request: Request) -> Response:
    form = await form_of(request)
    try:
        made = await run_in_threadpool(lambda: users.create_token(
            _engine(request), {"name": str(form.get("name", "")), "role": str(form.get("role", ""))},
            actor=request.state.admin_user))
    except ApiError as exc:
        return await redirect(request, "/tokens", f"Token not created: {exc.message}", "error")
    return await _tokens_page(request, created=made, status=201)


@page
@requires("owner")
async def token_revoke(request: Request) -> Response:
    try:
        await run_in_threadpool(lambda: users.revoke_token(
            _engine(request), request.path_params["id"], actor=request.state.admin_user))
    except ApiError as exc:
        return await redirect(request, "/tokens", exc.message, "error")
    return await redirect(request, "/tokens", "Token revoked: it is refused from now on.")


@page
@requires("viewer")
async def account_page(request: Request) -> Response:
    data = {"username": request.state.admin_user, "role": request.state.role}
    return await render(request, "account.html", data, title="My account")


@page
@requires("viewer")
async def account_password(request: Request) -> Response:
    form = await form_of(request)
    body = {"current_password": str(form.get("current_password", "")), "new_password": str(form.get("new_password", ""))}
    if body["new_password"] != str(form.get("confirm_password", "")):
        return await redirect(request, "/account", "Password not changed: the two new passwords differ.", "error")
    try:
        await run_in_threadpool(users.change_own_password, _engine(request), request.state.admin_user, body)
    except ApiError as exc:
        return await redirect(request, "/account", f"Password not changed: {exc.message}", "error")
    return await redirect(request, "/account", "Your password is changed.")


def routes() -> list[Route]:
    return [
        Route("/users", users_page, methods=["GET"]),
        Route("/users", users_invite, methods=["POST"]),
        Route("/users/{username:str}", user_change, methods=["POST"]),
        Route("/tokens", tokens_page, methods=["GET"]),
        Route("/tokens", tokens_create, methods=["POST"]),
        Route("/tokens/{id:int}/revoke", token_revoke, methods=["POST"]),
        Route("/account", account_page, methods=["GET"]),
        Route("/account/password", account_password, methods=["POST"]),
    ]

"""Sign in and sign out (the session itself is ``server.web.sessions``).

Failed attempts are counted per client address and user name; the sixth failure within a
minute (and every attempt after it, until the minute passes) gets 429 without checking the
password, so guessing is slow even across processes.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.store import web as store
from server.web import accounts
from server.web.render import render
from server.web.sessions import (
    CSRF_MESSAGE, check_csrf, end_session, form_of, load_session, page, redirect, start_session, web_error,
)


def _safe_next(value: str | None) -> str:
    # Only paths on this site: "//evil.example" and "https://…" would be open redirects.
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/sources"
    return value


def _client_ip(request: Request) -> str:
    if request.app.state.config.trust_proxy:
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


async def sign_in_form(request: Request) -> Response:
    session = await load_session(request)
    nxt = _safe_next(request.query_params.get("next"))
    if session.user:
        return await redirect(request, nxt)
    data = {"next": nxt, "user": request.app.state.config.admin_user, "error": None}
    return await render(request, "sign_in.html", data, title="Sign in")


async def sign_in(request: Request) -> Response:
    form = await form_of(request)
    raw_next = form.get("next")
    nxt = _safe_next(raw_next if isinstance(raw_next, str) else None)  # a file part named "next" is no path
    if not await check_csrf(request):
        return web_error(request, 403, "csrf_failed", CSRF_MESSAGE)
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    engine = request.app.state.engine
    key = accounts.throttle_key(_client_ip(request), username)
    data = {"next": nxt, "user": username, "error": None}
    if await run_in_threadpool(accounts.too_many_failures, engine, key):
        data["error"] = "Too many failed sign-ins. Wait a minute, then try again."
        response = await render(request, "sign_in.html", data, status=429, title="Sign in")
        response.headers["Retry-After"] = "60"
        return response
    if not username or not await run_in_threadpool(accounts.authenticate, engine, username, password):
        await run_in_threadpool(store.record_failure, engine, key)
        data["error"] = "That user name and password do not match."
        return await render(request, "sign_in.html", data, status=401, title="Sign in")
    await run_in_threadpool(store.clear_failures, engine, key)
    await start_session(request, username)  # a new session id and a fresh CSRF token
    return await redirect(request, nxt)


@page
async def sign_out(request: Request) -> Response:
    await end_session(request)
    return await redirect(request, "/sign-in", "You are signed out.")


def routes() -> list[Route]:
    return [
        Route("/sign-in", sign_in_form, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
    ]

"""Sign in and sign out (the session itself is ``server.web.sessions``).

Attempts are throttled before the password is checked (``server.web.throttle``): 5 a minute per
account from one address, 20 a minute per address whatever the user name, 50 a minute per
account, and a few scrypt checks at once per process. Beyond a limit the answer is 429 without a
password check. The address is the TCP peer, or with SWITCHBOARD_TRUST_PROXY the rightmost
X-Forwarded-For entry (``server.api.client_address``), the rule the collector uses.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.auth import requires
from server.api.client_address import client_address, forwarded_for
from server.store import audit
from server.store import web as web_store
from server.web import accounts, throttle
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
    peer = request.client.host if request.client else None
    trust = request.app.state.config.trust_proxy
    return client_address(peer, forwarded_for(request.scope["headers"]), trust) or "unknown"


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
    address = _client_ip(request)
    data = {"next": nxt, "user": username, "error": None}
    # Reserve the attempt before anything is checked: racing attempts can't all pass the count.
    reserved, within = await run_in_threadpool(throttle.reserve, engine, throttle.address_keys(address, username))
    if within:
        more, within = await run_in_threadpool(throttle.reserve, engine, throttle.account_keys(username))
        reserved += more
    if not within:
        return await _throttled(request, data, "Too many failed sign-ins. Wait a minute, then try again.", 60)
    slots = throttle.check_slots(request.app)
    if slots.locked():  # every scrypt slot busy: don't queue CPU work behind a burst
        await run_in_threadpool(throttle.release, engine, reserved)
        return await _throttled(request, data, "Too many sign-ins at once. Try again in a moment.", 1)
    async with slots:
        ok = bool(username) and await run_in_threadpool(accounts.authenticate, engine, username, password)
    # Both outcomes go to the audit log (the throttled ones above do not: a flood would fill it).
    # A name that is no account is not recorded: it may be a password typed in the wrong field.
    known = ok or await run_in_threadpool(lambda: web_store.get_user(engine, username) is not None)
    who = username if known else "(unknown user)"
    await run_in_threadpool(lambda: audit.record(
        engine, actor=who, action="sign_in" if ok else "sign_in.failed", subject=f"user:{who}"))
    if not ok:
        data["error"] = "That user name and password do not match."
        return await render(request, "sign_in.html", data, status=401, title="Sign in")
    await run_in_threadpool(throttle.release, engine, reserved, throttle.address_keys(address, username)[0][0])
    await start_session(request, username)  # a new session id and a fresh CSRF token
    return await redirect(request, nxt)


async def _throttled(request: Request, data: dict, message: str, retry_after: int) -> Response:
    data["error"] = message
    response = await render(request, "sign_in.html", data, status=429, title="Sign in")
    response.headers["Retry-After"] = str(retry_after)
    return response


@page
@requires("viewer")
async def sign_out(request: Request) -> Response:
    await end_session(request)
    return await redirect(request, "/sign-in", "You are signed out.")


def routes() -> list[Route]:
    return [
        Route("/sign-in", sign_in_form, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
    ]

"""Sessions, CSRF tokens and the ``@page`` guard every web app route wears.

The cookie is a small dict signed with itsdangerous (HMAC-SHA1 over the JSON, timestamped):
``{"s": session id or absent, "c": CSRF token, "f": one-shot flash message}``. It is HttpOnly,
SameSite=Lax, and Secure when the request came over https. The key is ``SWITCHBOARD_SECRET_KEY``
or, when that is empty, a random key generated once and kept in the database (``app_state``), so
every process signs alike; a new key ends every session, since no old cookie verifies.

Signing in creates a row in ``web_sessions`` (``server.store.web``) and puts only its random id in
the cookie. A session counts only while its row exists and has not expired, so signing out (which
deletes the row) also ends copies of the cookie, in every process. There is no cache in front of
that lookup on purpose: it is one primary-key read per page, and a cache would let a signed-out
cookie live on.

Every POST must carry the session's CSRF token as the form field ``csrf_token`` (or the
``X-CSRF-Token`` header); otherwise the request is refused with 403 before the handler runs.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from datetime import timedelta
from typing import Any, Awaitable, Callable

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from server.api.auth import allows, required_role
from server.errors import error_response
from server.web.security_headers import secure

from server.store import tokens
from server.store import web as store

COOKIE = "switchboard_session"
MAX_AGE = 12 * 3600  # a signed-in session lasts 12 hours from sign-in, then sign in again
STATE_KEY = "web_session_key"

Handler = Callable[[Request], Awaitable[Response]]


async def _serializer(request: Request) -> URLSafeTimedSerializer:
    app = request.app
    cached = getattr(app.state, "web_serializer", None)
    if cached is None:
        key = app.state.config.secret_key or await run_in_threadpool(
            tokens.get_or_create_state, app.state.engine, STATE_KEY, lambda: secrets.token_urlsafe(48)
        )
        cached = app.state.web_serializer = URLSafeTimedSerializer(key, salt="switchboard-web-session")
    return cached


class Session(dict):
    """The decoded cookie; ``save(response)`` writes it back when something changed.

    ``user`` is not in the cookie: ``load_session`` reads it from the session's row.
    """

    changed = False
    user: str | None = None
    role: str | None = None

    def set(self, key: str, value: Any) -> None:
        if self.get(key) != value:
            self[key] = value
            self.changed = True

    def drop(self, key: str) -> Any:
        if key in self:
            self.changed = True
            return self.pop(key)
        return None

    @property
    def csrf(self) -> str:
        if not self.get("c"):
            self.set("c", secrets.token_urlsafe(32))
        return self["c"]


async def load_session(request: Request) -> Session:
    cached = getattr(request.state, "web_session", None)
    if cached is not None:
        return cached
    serializer = await _serializer(request)
    data: dict[str, Any] = {}
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            loaded = serializer.loads(raw, max_age=MAX_AGE)
            data = loaded if isinstance(loaded, dict) else {}
        except BadSignature:  # includes SignatureExpired
            data = {}
    user = role = None
    if isinstance(data.get("s"), str):
        found = await run_in_threadpool(store.session_principal, request.app.state.engine, data["s"])
        user, role = found if found is not None else (None, None)
        if user is None:
            # Signed out, expired or never ours: the same as no cookie at all, exactly as an
            # expired signature is (a fresh CSRF token comes with the next page).
            data = {}
    session = request.state.web_session = Session(data)
    session.user, session.role = user, role
    return session


async def start_session(request: Request, username: str) -> Session:
    """Sign ``username`` in: a new session row and id, and a fresh CSRF token."""
    session = await load_session(request)
    previous = session.get("s")  # signing in again replaces it
    session_id = secrets.token_urlsafe(32)
    await run_in_threadpool(
        store.create_session, request.app.state.engine, session_id, username, timedelta(seconds=MAX_AGE), previous
    )
    session.clear()
    session.set("s", session_id)
    session.user = username
    user = await run_in_threadpool(store.get_user, request.app.state.engine, username)
    session.role = user["role"] if user else None
    session.csrf
    return session


async def end_session(request: Request) -> Session:
    """Sign out: delete the session's row, so every copy of the cookie stops working now."""
    session = await load_session(request)
    if session.get("s"):
        await run_in_threadpool(store.end_session, request.app.state.engine, session["s"])
    session.clear()
    session.user = session.role = None
    session.changed = True
    return session


async def save_session(request: Request, response: Response) -> Response:
    session = await load_session(request)
    if session.changed:
        serializer = await _serializer(request)
        response.set_cookie(
            COOKIE, serializer.dumps(dict(session)), max_age=MAX_AGE, httponly=True, samesite="lax",
            secure=request.url.scheme == "https", path="/",
        )
    return response


def flash(session: Session, message: str, kind: str = "ok") -> None:
    session.set("f", [kind, message])


async def redirect(request: Request, url: str, message: str | None = None, kind: str = "ok") -> Response:
    if message:
        flash(await load_session(request), message, kind)
    return await save_session(request, RedirectResponse(url, status_code=303))


def csrf_ok(session: Session, submitted: str | None) -> bool:
    expected = session.get("c")
    return bool(expected and submitted) and hmac.compare_digest(str(expected), str(submitted))


CSRF_MESSAGE = (
    "This form could not be accepted: it did not carry a valid security (CSRF) token. That usually "
    "means the page was open for too long or the post did not come from this web app. Go back, "
    "reload the page and try again."
)


async def form_of(request: Request) -> FormData:
    form = getattr(request.state, "web_form", None)
    if form is None:
        form = request.state.web_form = await request.form()
    return form


async def check_csrf(request: Request) -> bool:
    session = await load_session(request)
    submitted: Any = request.headers.get("x-csrf-token")
    if submitted is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            submitted = (await form_of(request)).get("csrf_token")
    return csrf_ok(session, submitted if isinstance(submitted, str) else None)


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and request.query_params.get("format") != "json"


def web_error(request: Request, status: int, code: str, message: str) -> Response:
    """An error a person reads (HTML for browsers) or a program reads (JSON code + message)."""
    if not wants_html(request):
        return error_response(status, code, message)
    from html import escape

    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<link rel=stylesheet href='/static/app.css'><title>{status} · Switchboard</title>"
        f"<main class=narrow><h1>{status}: {escape(code.replace('_', ' '))}</h1><p>{escape(message)}</p>"
        f"<p><a href='/sources'>Back to sources</a></p></main></html>"
    )
    return secure(HTMLResponse(body, status_code=status))


def forbidden_message(role: str | None, needed: str) -> str:
    if role == "viewer":
        return ("Nothing was changed: you are signed in as a viewer, who can look at everything but change "
                "nothing. Ask an owner to make you an editor.")
    return f"Nothing was changed: this needs the {needed} role and you have the {role} role."


def page(handler: Handler) -> Handler:
    """Require a signed-in session (else redirect to /sign-in), the route's role (the admin API's
    one rule, ``server.api.auth.required_role``: pages are the viewer's, every POST the editor's,
    ``@requires`` overrides) and, for POST, a valid CSRF token."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        session = await load_session(request)
        if not session.user:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            nxt = target if request.method == "GET" else "/"
            from urllib.parse import quote

            return RedirectResponse(f"/sign-in?next={quote(nxt, safe='/')}", status_code=303)
        request.state.admin_user = session.user
        request.state.actor = session.user
        request.state.role = session.role
        needed = required_role(handler, request.method)
        if not allows(session.role, needed):
            return web_error(request, 403, "forbidden", forbidden_message(session.role, needed))
        if request.method not in ("GET", "HEAD") and not await check_csrf(request):
            return web_error(request, 403, "csrf_failed", CSRF_MESSAGE)
        response = await handler(request)
        return await save_session(request, response)

    guarded.web_requires_session = True  # type: ignore[attr-defined]
    return guarded

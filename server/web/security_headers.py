"""Security headers of the web app's pages (HTML for people; not the bundle or the collector).

The pages run no inline script, no inline style and no event-handler attributes: scripts are
``/static/*.js``, data reaches them in ``<script type="application/json">`` blocks (which never
run), tile colours are classes. So the policy can be strict, ``'self'`` only and no nonce needed;
an injected ``<script>`` or ``onclick=`` would simply not run. ``frame-ancestors 'none'`` and
``X-Frame-Options: DENY`` (for older browsers) stop click-jacking; ``Referrer-Policy`` keeps page
URLs (source ids, query strings) from leaking to other sites; ``nosniff`` stops a browser from
running a response as a type it guessed.

The bundle and the collector do not get these: the bundle must stay embeddable as a script on
any site, and the collector's CORS answers are its own (``server/ingest/cors.py``).
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # the debugger's fetch and EventSource
    "font-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def secure(response: Response) -> Response:
    """Add the page headers to a web app response (HTML page, error page or redirect)."""
    response.headers.update(PAGE_HEADERS)
    return response


class NoSniff:
    """Static files (CSS, JS, the icon) are served as the type their name says, never sniffed."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_nosniff)

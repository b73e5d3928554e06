"""The web app's static files (``/static``): CSS, JS, icons, the vendored Swagger UI.

Starlette's ``StaticFiles`` serves them, Range requests included. Its errors are ours to shape:
a missing file is an ``HTTPException`` (the app's handler makes it the JSON 404 every route
gives), but a Range header the file cannot be served by is answered by ``FileResponse`` itself,
in plain text — ``400 Range header: start must be less than end`` or an empty ``416`` — and every
4xx of ours is JSON with ``code`` and ``message``. ``JsonRangeErrors`` rewrites those two answers
on their way out, keeping their other headers (a 416's ``Content-Range: bytes */N`` tells the
client the file's size), instead of re-parsing the header in a copy of Starlette's rules that
could drift from what ``FileResponse`` then does.
"""

from __future__ import annotations

from importlib import resources

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_body

STATIC = str(resources.files("server.static"))  # static/ of the repository, installed with the package


class Assets(StaticFiles):
    """The web app's static files, but not the package's Python (``static/__init__.py`` makes the
    folder the installable package ``server.static``; it is no asset to serve)."""

    async def get_response(self, path: str, scope) -> Response:
        if path.endswith((".py", ".pyc")) or "__pycache__" in path:
            raise HTTPException(404)
        return await super().get_response(path, scope)


def _range_error(status: int, text: str, content_range: str) -> bytes:
    if status == 416:
        size = content_range.rpartition("/")[2]
        body = error_body("range_not_satisfiable",
                          f"The Range header asks for bytes beyond the end of the file ({size} bytes)")
    else:  # Starlette's own words say which rule the header broke
        body = error_body("invalid_range", f"The Range header cannot be used ({text or 'malformed'}); "
                          "send bytes=first-last, or no Range for the whole file")
    return orjson.dumps(body)


class JsonRangeErrors:
    """``FileResponse``'s plain-text 400 and 416 (a Range it cannot serve) as our JSON errors."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: Message | None = None  # the start of a plain-text range error, until its body is complete
        text = b""

        async def send_json(message: Message) -> None:
            nonlocal held, text
            if message["type"] == "http.response.start" and message["status"] in (400, 416) and any(
                    name == b"content-type" and value.startswith(b"text/plain") for name, value in message["headers"]):
                held = message
                return
            if held is None:
                await send(message)
                return
            text += message.get("body", b"")
            if message.get("more_body", False):
                return
            headers = {name: value for name, value in held["headers"]}
            body = _range_error(held["status"], text.decode("utf-8", "replace"),
                                headers.get(b"content-range", b"").decode("latin-1"))
            kept = [(n, v) for n, v in held["headers"] if n not in (b"content-type", b"content-length")]
            await send({**held, "headers": [*kept, (b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_json)

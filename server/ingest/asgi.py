"""The Tracking API's hot path speaks ASGI directly.

A collector request is the one place where per-request framework work shows: Starlette's
``Request`` parses headers into a case-insensitive multi-dict on first use, and ``Response``
re-encodes every header. Here the headers are read once into a plain dict of raw bytes (ASGI
already lower-cases the names), and answers are sent from prepared byte strings.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.api.edge.one_write import answer_writer
from server.errors import error_body

Headers = dict[bytes, bytes]
JSON = (b"content-type", b"application/json")


class Call:
    """One request: its scope, its ``receive``, and its headers as ``{lower-case name: value}``."""

    __slots__ = ("scope", "receive", "headers")

    def __init__(self, scope: dict[str, Any], receive):
        self.scope = scope
        self.receive = receive
        self.headers: Headers = dict(scope["headers"])

    def header(self, name: bytes) -> str:
        return self.headers.get(name, b"").decode("latin-1")

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def client_host(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None


class Answer:
    """A complete response: status, raw header pairs and body, sent in two ASGI messages, or in
    one write when the server is our own edge (``server/api/edge/one_write.py``)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]):
        self.status = status
        self.body = body
        self.headers = [JSON, (b"content-length", str(len(body)).encode()), *headers] if body else headers

    async def __call__(self, scope, receive, send) -> None:
        write = answer_writer(send)  # one write under our own protocol (server/api/edge/one_write.py)
        if write is not None and write(self.status, self.headers, self.body):
            return
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def error_answer(status: int, code: str, message: str, headers: list[tuple[bytes, bytes]],
                 extra: dict[str, Any] | None = None) -> Answer:
    """The same JSON error shape as server/errors.py (``code``, ``message``, nested ``error``)."""
    return Answer(status, orjson.dumps(error_body(code, message, **(extra or {}))), headers)


def encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

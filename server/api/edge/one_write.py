"""One write per answer: a prepared response's status line, headers and body in one
``transport.write``, for the apps of this server that know them all at once.

ASGI sends a response as two messages, and uvicorn's httptools protocol turns them into two
writes (two ``send`` system calls, two TCP segments) after checking every header against two
regular expressions in Python. For the collector's answers — a few fixed headers and a short
JSON body, thousands a second — that was about a third of the event loop's time (py-spy,
``bench/profiles/single-path.txt``). ``EdgeProtocol`` gives each request's ``send`` a
``send_answer`` sibling (``attach``); an app that holds a complete answer asks for it through
``answer_writer(send)`` and falls back to the two ASGI messages when it gets None: under another
server, behind a middleware that wraps ``send`` (its wrapper has no ``send_answer``, so nothing
it would add is bypassed), and in every case this does not cover (flow control paused, a HEAD
request, an answer without a body, a ``connection`` header). The access log gets uvicorn's line.
The bytes are those uvicorn writes for the same answer (``tests/test_edge_one_write.py``
compares them).
"""

from __future__ import annotations

from typing import Any, Callable

from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

Writer = Callable[[int, list[tuple[bytes, bytes]], bytes], bool]


def attach(cycle: Any) -> None:
    """Give this request's cycle (uvicorn's ``RequestResponseCycle``) its ``send_answer``."""
    cycle.send_answer = lambda status, headers, body: _send_answer(cycle, status, headers, body)


def answer_writer(send: Any) -> Writer | None:
    """The one-write path for this ``send``, when it is our protocol's own."""
    return getattr(getattr(send, "__self__", None), "send_answer", None)


def _send_answer(cycle: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Write the whole answer now; False (nothing written) when the ASGI path must do it."""
    scope = cycle.scope
    if (cycle.response_started or cycle.disconnected or cycle.flow.write_paused
            or not body or scope["method"] == "HEAD" or status not in STATUS_LINE):
        return False
    content = [STATUS_LINE[status]]
    length = None
    for name, value in (*cycle.default_headers, *headers):
        name = name.lower()
        if name == b"connection" or HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            return False  # uvicorn's own path handles it (or refuses it)
        if name == b"content-length":
            length = value
        content += (name, b": ", value, b"\r\n")
    if length is None or int(length) != len(body):
        return False
    if not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    content += (b"\r\n", body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    if cycle.access_log:  # the line uvicorn logs for the same answer
        cycle.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                                 get_path_with_query_string(scope), scope["http_version"], status)
    cycle.transport.write(b"".join(content))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True

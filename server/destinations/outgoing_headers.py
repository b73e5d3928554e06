"""Rules for headers an admin adds to outgoing requests (the webhook's custom headers).

A custom header is data an admin typed, written into our HTTP request. Three things would let it
do more than add a header, so they are refused — at save time (422 ``invalid_header``, through
the catalog's validator) and again by the sender for rows saved before this rule existed (a dead
letter with the reason, instead of four hours of retries):

- CR, LF or NUL (or any other control character but tab) in a name or value: the bytes after a
  line break would be read as further headers or as a second request (request smuggling);
- a name that is not an RFC 9110 token (``!#$%&'*+-.^_`|~``, digits, letters);
- a header that frames the message or belongs to the connection, not to the vendor: ``Host``,
  ``Content-Length``, ``Transfer-Encoding``, ``Connection``, ``Keep-Alive``, ``Upgrade``,
  ``TE``, ``Trailer`` and every ``Proxy-*``. Our transport sets the ones it needs itself; a
  second ``Content-Length`` or ``Host`` would make the request mean something else to a proxy
  than to the vendor.

A kernel module: the catalog and the delivery sender both use it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
FORBIDDEN = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
})
MAX_NAME = 256
MAX_VALUE = 8192


class HeaderError(ValueError):
    """A header the rules refuse; the message names it (never its value, which may be a secret)."""


def header_problem(name: Any, value: Any) -> str | None:
    """Why ``name: value`` may not be sent, or None. (The sender asks this for every header it
    sends: names repeat, so their verdict is cached; a value costs one regex search.)"""
    problem = _name_problem(name) if isinstance(name, str) else "a header name must be non-empty text"
    if problem:
        return problem
    text = value if isinstance(value, str) else str(value)
    if _CONTROL.search(text):
        return f"the value of header {name!r} contains a line break, NUL or another control character"
    if len(text) > MAX_VALUE:
        return f"the value of header {name!r} is longer than {MAX_VALUE} characters"
    return None


@functools.lru_cache(maxsize=1024)
def _name_problem(name: str) -> str | None:
    if not name:
        return "a header name must be non-empty text"
    shown = repr(name[:60])
    if _CONTROL.search(name) or not _TOKEN.fullmatch(name):
        return f"header name {shown} is not a valid HTTP token (letters, digits and !#$%&'*+-.^_`|~ only)"
    if len(name) > MAX_NAME:
        return f"header name {shown} is longer than {MAX_NAME} characters"
    lower = name.lower()
    if lower in FORBIDDEN or lower.startswith("proxy-"):
        return f"header {name!r} is set by Switchboard itself and cannot be a custom header"
    return None


def first_problem(headers: dict[str, Any]) -> str | None:
    """What the sender asks for every request: the first header the rules refuse, or None.
    (About a microsecond for a webhook's headers: names are cached, a value is one regex search.)"""
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem:
            return problem
    return None


def check_headers(headers: dict[str, Any] | Iterable[tuple[str, Any]]) -> None:
    """Raise ``HeaderError`` for the first header the rules refuse."""
    items = headers.items() if isinstance(headers, dict) else headers
    for name, value in items:
        problem = header_problem(name, value)
        if problem:
            raise HeaderError(problem)

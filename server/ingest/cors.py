"""CORS for the Tracking API: every answer, and the preflight.

analytics-next ≥ 1.84 sends ``Authorization`` and ``X-Retry-Count``, which makes every
cross-origin send a preflighted request. The answer allows POST with those headers (plus any
the page asks for: ``deliveryStrategy.config.headers``), may be cached by the browser, and
echoes the Origin with ``Allow-Credentials`` so that ``credentials: 'include'`` works too.
``Retry-After`` and ``X-RateLimit-Reset`` are exposed so a page can read them on a 429.
"""

from __future__ import annotations

import re

from server.ingest.asgi import Answer, Call

ALLOWED_HEADERS = ("authorization", "content-type", "x-retry-count")
MAX_AGE = b"86400"  # browsers cap it lower (Chromium: 2 h); ask for a day
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ANY_ORIGIN = [(b"access-control-allow-origin", b"*")]
_WITH_ORIGIN = [
    (b"access-control-allow-credentials", b"true"),
    (b"access-control-expose-headers", b"Retry-After, X-RateLimit-Reset"),
    (b"vary", b"Origin"),
]


def cors_headers(call: Call) -> list[tuple[bytes, bytes]]:
    origin = call.headers.get(b"origin")
    if not origin:
        return _ANY_ORIGIN
    return [(b"access-control-allow-origin", origin), *_WITH_ORIGIN]


def preflight(call: Call) -> Answer:
    requested = call.header(b"access-control-request-headers")
    extra = [h.strip().lower() for h in requested.split(",") if _TOKEN.match(h.strip())]
    allowed = ", ".join(dict.fromkeys([*ALLOWED_HEADERS, *extra]))
    headers = [
        *cors_headers(call),
        (b"access-control-allow-methods", b"POST, OPTIONS"),
        (b"access-control-allow-headers", allowed.encode("latin-1")),
        (b"access-control-max-age", MAX_AGE),
    ]
    if call.headers.get(b"access-control-request-private-network") == b"true":
        headers.append((b"access-control-allow-private-network", b"true"))
    return Answer(204, b"", headers)

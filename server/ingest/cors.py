"""CORS for the Tracking API: every answer, and the preflight.

analytics-next ≥ 1.84 sends ``Authorization`` and ``X-Retry-Count``, which makes every
cross-origin send a preflighted request. The answer allows POST with those headers (plus any
the page asks for: ``deliveryStrategy.config.headers``), may be cached by the browser, and
echoes the Origin with ``Allow-Credentials`` so that ``credentials: 'include'`` works too.
``Retry-After`` and ``X-RateLimit-Reset`` are exposed so a page can read them on a 429.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

ALLOWED_HEADERS = ("authorization", "content-type", "x-retry-count")
MAX_AGE = "86400"  # browsers cap it lower (Chromium: 2 h); ask for a day
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def cors_headers(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    if not origin:
        return {"Access-Control-Allow-Origin": "*"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After, X-RateLimit-Reset",
        "Vary": "Origin",
    }


def preflight(request: Request) -> Response:
    requested = request.headers.get("access-control-request-headers", "")
    extra = [h.strip().lower() for h in requested.split(",") if _TOKEN.match(h.strip())]
    allowed = list(dict.fromkeys([*ALLOWED_HEADERS, *extra]))
    headers = {
        **cors_headers(request),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ", ".join(allowed),
        "Access-Control-Max-Age": MAX_AGE,
    }
    if request.headers.get("access-control-request-private-network") == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return Response(status_code=204, headers=headers)

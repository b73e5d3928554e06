"""Reading an admin API request's JSON body: one object, size-limited, clear 400/413 errors.

Shared by every plane's /api/v1 routes (sources and destinations, dead-letter replay, …).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from server.errors import ApiError

MAX_BODY = 1_000_000


async def read_json(request: Request, max_bytes: int = MAX_BODY) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    body = await request.body()
    if len(body) > max_bytes:
        raise ApiError(413, "payload_too_large", f"Request bodies are limited to {max_bytes} bytes")
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "The body must be a JSON object")
    return data

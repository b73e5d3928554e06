"""One shape for every error a client can see.

Every 4xx/5xx body is JSON with ``code`` and ``message`` at the top level (Segment's clients
read ``payload['code']``). The admin API also nests them under ``error`` (with ``field`` for
validation errors), the shape its documentation promises.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("switchboard")


class _IdConvertor(IntegerConvertor):
    """``{id:int}`` path parameters: at most 18 digits, so every value fits a 64-bit column.

    A longer number matches no route (a JSON 404) instead of overflowing the database driver
    (a 500). Registered over Starlette's ``int`` before any plane builds its routes.
    """

    regex = "[0-9]{1,18}"


register_url_convertor("int", _IdConvertor())

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


class ApiError(Exception):
    """Raise anywhere in a request to answer with a JSON error."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}
        self.extra = extra or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    inner: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        inner["field"] = field
    inner.update(extra)
    return {"code": code, "message": message, **({"field": field} if field else {}), **extra, "error": inner}


def error_response(status: int, code: str, message: str, *, field: str | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return json_response(error_body(code, message, field, **extra), status, headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers, **exc.extra)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _DEFAULT_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404:
        message = f"Nothing at {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def server_error_handler(request: Request, exc: Exception) -> Response:
    # Never expected: every input is meant to get a 4xx. Log it loudly, answer in the same shape.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    HTTPException: http_exception_handler,
    Exception: server_error_handler,
}


# Every error code a client can see, in one place, with what it means. Call sites pass these
# names; tests/test_error_codes.py fails when server/ answers with a code missing here.
CODES: dict[str, str] = {
    "bad_request": "the request is malformed in a way no more specific code covers",
    "batch_too_many_events": "a Tracking API batch holds more events than allowed",
    "conflict": "the change conflicts with the current state",
    "csrf_failed": "a web app form without a valid CSRF token",
    "database_unreachable": "/readyz: the store does not answer",
    "error": "an HTTP error without a more specific code",
    "forbidden": "signed in (or a valid token), but the role is below the route's (docs/admin-api.md#roles)",
    "headers_too_large": "the request line and headers are over SWITCHBOARD_MAX_HEADER_BYTES (431)",
    "incomplete_body": "the request body ended early",
    "internal_error": "a bug on our side (logged); never expected",
    "invalid_batch": "a Tracking API batch that is not a list of events",
    "early_send_refused": "the snippet's early send of a call with options, or for a source with consent categories or filters (409): the bundle sends it",
    "invalid_early_event": "a body posted to the collector's /e that is not the snippet's early-send array",
    "invalid_event": "an event nested too deep, with a number no double holds, or an id that lost precision",
    "invalid_keep_request": "a body posted to the collector's /keep (server-set cookies) that is malformed, or a domain the page and the collector are not both on",
    "invalid_filter": "a destination filter that does not parse or fit the rules (docs/filters.md); with position",
    "invalid_gzip": "a gzip body that does not decompress, or of more than 16 members",
    "invalid_http": "bytes on the connection that are not HTTP/1.1",
    "invalid_ids": "an ids parameter that is not a list of ids",
    "invalid_limit": "a limit parameter out of range",
    "invalid_number": "a parameter that must be a number is not",
    "invalid_parameter": "a query parameter with a bad value",
    "invalid_range": "a Range header a static file cannot be served by (not bytes=, no range, start after end)",
    "invalid_time": "a parameter that must be an ISO time is not",
    "invalid_write_key": "no enabled source has this write key",
    "last_owner": "the change would delete or demote the only owner",
    "malformed_json": "the body is not a JSON object",
    "method_not_allowed": "the path exists, the method does not",
    "missing_write_key": "a Tracking API call without a write key",
    "not_a_warehouse": "a warehouse-only action on another destination",
    "not_found": "no such route or object",
    "origin_required": "a request to the collector's /keep (server-set cookies) without an Origin header",
    "not_cloud_mode": "a history replay of a destination that is not in cloud mode",
    "payload_too_large": "the body is over the size limit",
    "range_not_satisfiable": "a Range header starting beyond the end of a static file (416, with Content-Range: bytes */size)",
    "rate_limited": "too many requests for this write key; retry later",
    "server_cookies_off": "a request to the collector's /keep for a source without server-set cookies (403)",
    "source_disabled": "the write key's source is disabled",
    "storage_busy": "the collector's commit queue is full; retry after Retry-After",
    "storage_unavailable": "the event could not be stored; retry later",
    "store_unavailable": "the store cannot write right now (locked, full, read-only, unreachable); retry later",
    "tester_unavailable": "the Event Tester needs a cloud-mode destination",
    "too_many_connections": "the process is at SWITCHBOARD_MAX_CONNECTIONS; retry later",
    "unauthorized": "a missing, wrong or revoked admin token",
    "username_taken": "a user with this username exists",
    "wrong_password": "the current password given to change it is wrong",
    "unavailable": "the bundle cannot be served right now",
    "unknown_destination": "no catalog destination has this slug",
    "unsupported_encoding": "a Content-Encoding other than gzip or identity",
    "unsupported_media_type": "a body in a media type the route does not take",
    "validation_error": "a value fails the manifest's or the API's rules",
}

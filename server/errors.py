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

"""Reading a Tracking API body: within its size limit, gunzipped if need be, parsed as JSON.

Browsers send ``Content-Type: text/plain`` (no preflight for the classic library), servers
``application/json``: the body is JSON whatever the Content-Type says. Sizes are checked on the
bytes as they arrive and again after decompression, so neither a huge upload nor a gzip bomb
is ever held in memory whole.

A body over ``INLINE_LIMIT`` (before or after gzip) is decompressed and parsed on the
collector's thread beside the event loop (``server/ingest/off_loop.py``); smaller ones, the
common case, are handled on the loop, where they cost less than the hand-over would.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from server.errors import ApiError
from server.ingest.asgi import Call
from server.ingest.depth import deep_batch, loads, too_deep_error
from server.ingest.off_loop import OffLoop

EVENT_LIMIT = 32 * 1024  # one event (the body of /v1/track and friends; each item of a batch)
# The whole body of /v1/batch and /v1/import: RudderStack's SDKs send batches up to 4 MB (Segment's
# own limit is 500 KB, which their SDKs stay under).
BATCH_LIMIT = 4 * 1024 * 1024
METRICS_LIMIT = 500 * 1024  # the body of /v1/m (analytics-next's own metrics: a few hundred bytes)
# A gzip stream of incompressible data is a little larger than the data itself.
_GZIP_SLACK = 1024
# RFC 1952 lets a gzip body be several members one after the other (what ``cat a.gz b.gz``
# makes); every SDK we know of sends one. Each member after the first starts over on a copy of
# what is left of the body (zlib's ``unused_data``), so without a bound a body of 200,000 empty
# members (4 MB) cost 200,000 copies of up to 4 MB: seconds of CPU for one request. 16 keeps
# concatenated files working and bounds that work to 16 copies of the body.
MAX_GZIP_MEMBERS = 16
# Bodies up to this size (compressed, and once decompressed) are gunzipped and parsed on the
# event loop: at most a few ms whatever their shape, and a batch of 100 analytics.js events
# (~60 KB) is well within it. Larger ones go to the collector's own thread.
INLINE_LIMIT = 128 * 1024


def _too_large(code: str, what: str, limit: int, size: int | None = None) -> ApiError:
    measured = f"is {size:,} bytes" if size is not None else "is larger than that"
    shown = f"{limit // 1024 // 1024} MB" if limit % (1024 * 1024) == 0 else f"{limit // 1024} KB"
    return ApiError(400, code, f"The {what} {measured}; the limit is {shown} ({limit:,} bytes)")


async def read_body(call: Call, limit: int, code: str, what: str, off_loop: OffLoop | None = None) -> bytes:
    """The request body, decompressed, or a 400 ``code`` once it exceeds ``limit`` bytes.
    With ``off_loop``, a large gzip body is decompressed there."""
    encoding = call.header(b"content-encoding").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; send gzip or nothing")
    gzipped = encoding in ("gzip", "x-gzip")
    cap = limit + _GZIP_SLACK if gzipped else limit
    declared = call.headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(code, what, limit, None if gzipped else int(declared))
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await call.receive()
        if message["type"] != "http.request":  # the client went away mid-body
            raise ApiError(400, "incomplete_body", "The request body ended before it was complete")
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > cap:
            raise _too_large(code, what, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not gzipped:
        if len(data) > limit:
            raise _too_large(code, what, limit, len(data))
        return data
    if off_loop is None or limit <= INLINE_LIMIT:
        return gunzip(data, limit, code, what)
    if len(data) <= INLINE_LIMIT:
        # Small as sent, but it may expand: decompressed here as long as it stays small.
        small = inflate(data, INLINE_LIMIT)
        if small is not None:
            return small
    return await off_loop.run(gunzip, data, limit, code, what)


def gunzip(data: bytes, limit: int, code: str, what: str) -> bytes:
    """Every gzip member of ``data`` decompressed, or a 400 ``code`` beyond ``limit`` bytes."""
    out = inflate(data, limit)
    if out is None:
        raise _too_large(code, what, limit)
    return out


def inflate(data: bytes, limit: int) -> bytes | None:
    """Every gzip member of ``data`` (at most MAX_GZIP_MEMBERS) decompressed, or None once that
    is over ``limit`` bytes (never producing more than ``limit`` + 1). Broken gzip is a 400."""
    out = bytearray()
    rest = data
    members = 0
    try:
        while rest:
            members += 1
            if members > MAX_GZIP_MEMBERS:
                raise ApiError(400, "invalid_gzip", f"The gzip body has more than {MAX_GZIP_MEMBERS} members; "
                               "send one (as gzip and every Segment library do)")
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += stream.decompress(rest, limit + 1 - len(out))
            if len(out) > limit or stream.unconsumed_tail:
                return None
            if not stream.eof:
                raise ApiError(400, "invalid_gzip", "The gzip body is truncated")
            rest = stream.unused_data
    except zlib.error as exc:
        raise ApiError(400, "invalid_gzip", f"The body is not valid gzip: {exc}") from None
    return bytes(out)


async def parse_object_off_loop(data: bytes, off_loop: OffLoop) -> dict[str, Any]:
    """``parse_object``, on the collector's thread when ``data`` is over INLINE_LIMIT."""
    if len(data) <= INLINE_LIMIT:
        return parse_object(data)
    return await off_loop.run(parse_object, data)


async def parse_deep_batch_off_loop(data: bytes, off_loop: OffLoop) -> tuple[Any, set[int]]:
    """``depth.deep_batch`` for a batch body the depth check refused (on the collector's thread
    when large): the body, and the indexes of its items too deep to keep."""
    if len(data) <= INLINE_LIMIT:
        return _deep_batch(data)
    return await off_loop.run(_deep_batch, data)


def _deep_batch(data: bytes) -> tuple[Any, set[int]]:
    try:
        return deep_batch(data)
    except orjson.JSONDecodeError:  # past orjson's 1024 levels (the depth check parsed the rest)
        raise too_deep_error() from None


def parse_object(data: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 ``malformed_json`` saying what is wrong."""
    parsed = parse_json(data, "a JSON object")
    if not isinstance(parsed, dict):
        raise ApiError(400, "malformed_json", f"The body must be a JSON object, not {json_type(parsed)}")
    return parsed


def parse_json(data: bytes, expected: str) -> Any:
    """The body as JSON (within the depth limit), or a 400 saying what is wrong."""
    if not data.strip():
        raise ApiError(400, "malformed_json", f"The body is empty; send {expected}")
    try:
        parsed = loads(data)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if reason.startswith("depth limit exceeded"):  # orjson stops at 1024 levels
            raise too_deep_error() from None
        if reason.startswith("number is infinity"):  # e.g. 1e400: no double holds it
            raise ApiError(400, "invalid_event", f"A number in the body is too large to store ({reason}); "
                           "send it as a string") from None
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}") from None
    return parsed


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"

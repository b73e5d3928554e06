"""Parsing a Tracking API body within a nesting limit, exactly, at C speed whatever the body.

orjson parses up to 1024 levels but writes at most 254, so an event nested between the two
used to be accepted, then fail when stored (a 500 that SDKs retry forever). We refuse anything
nested deeper than ``MAX_DEPTH`` levels (the body object itself is level 1) with a 400.

Cost: the hot path must not pay for this, and no body may make it expensive.

- A body with at most ``MAX_DEPTH`` opening brackets cannot be deeper than that (for a single
  event: two ``bytes.count`` calls). Otherwise the raw bytes are reduced to their brackets (one
  ``bytes.translate``) and innermost ``{}`` pairs are removed pass after pass: a balanced body is
  empty after as many passes as it is deep (a typical event: 4–6; for a batch of 100 analytics.js
  events about 1% of the request's CPU). Each pass must remove at least a quarter of what is left,
  so all the passes together read the brackets at most four times.
- When that quick answer is not "shallow" — brackets inside strings (which upset the count), a
  deep body, or passes that stopped paying off (thousands of long chains of brackets) — orjson
  decides, during the parse we need anyway: the body is parsed inside 1024 - 64 levels of arrays,
  so that orjson's own limit (``ORJSON_MAX_DEPTH``) falls exactly ``MAX_DEPTH`` levels into the
  body. That costs a copy of the body and ~0.1 ms of unwrapping, and knows strings from structure.

The rejected alternative walked the parsed value in Python when the quick answer doubted: about
1 µs per container, so a 4 KB gzip body holding 1.4 million empty arrays (and a string of ``[``
to make the quick answer doubt) cost ~1 s of event-loop time before its write key was checked.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.errors import ApiError

MAX_DEPTH = 64
# The deepest nesting orjson parses (its limit; tests/test_ingest_depth.py checks it, so an
# orjson that changes it fails the tests instead of letting deeper bodies through).
ORJSON_MAX_DEPTH = 1024
# Up to this size two counts are cheaper than the translation; a bigger body (a batch) nearly
# always has more than 64 brackets, so it goes straight to the translation.
_SMALL = 4096

# Every "[" becomes "{" and "]" becomes "}", everything else is deleted: nesting depth is the
# same whichever bracket opens a level.
_BRACKETS = bytes.maketrans(b"[]", b"{}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class TooDeep(ApiError):
    """The 400 for JSON nested more than MAX_DEPTH levels (a batch catches it: deep_batch)."""


def too_deep_error() -> ApiError:
    return TooDeep(400, "invalid_event",
                   f"The JSON is nested more than {MAX_DEPTH} levels deep (the body object is level 1); "
                   "flatten the event's properties")


def loads(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``orjson.loads(data)``, raising a 400 ``invalid_event`` (``TooDeep``) for a value nested
    deeper than ``max_depth``; any other error is orjson's own ``JSONDecodeError``, as
    ``orjson.loads`` raises it."""
    if _surely_shallow(data, max_depth):
        return orjson.loads(data)
    wrap = ORJSON_MAX_DEPTH - max_depth
    try:
        value = orjson.loads(b"[" * wrap + data + b"]" * wrap)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise too_deep_error() from None
        value = _NOT_WRAPPED
    for _ in range(wrap):
        if type(value) is not list or len(value) != 1:
            # Not valid JSON on its own (the wrapping can pair a stray "]" of the body, or
            # shift orjson's error positions): the plain parse says what is wrong, where.
            return orjson.loads(data)
        value = value[0]
    return value


_NOT_WRAPPED = object()


def _surely_shallow(data: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """True only if ``data`` cannot nest deeper than ``max_depth``; False: ask the parser."""
    if len(data) <= _SMALL and data.count(b"{") + data.count(b"[") <= max_depth:
        return True
    stream = data.translate(_BRACKETS, _NOT_BRACKETS)
    if len(stream) <= 2 * max_depth:  # no more than max_depth opening brackets
        return True
    for _ in range(max_depth):
        if not stream:
            return True
        shorter = stream.replace(b"{}", b"")
        # Unbalanced (brackets in strings) removes nothing; long chains remove little per pass.
        if len(shorter) * 4 > len(stream) * 3:
            return False
        stream = shorter
    return not stream


# ---------------------------------------------------------------- a batch with a deep item

def too_deep(value: Any, max_depth: int) -> bool:
    """Whether a parsed value nests deeper than ``max_depth`` levels (itself level 1): measured on
    orjson's own writing of it, by ``loads`` (C speed; orjson writes at most 254 levels, so a value
    it cannot write is deeper than any limit here)."""
    try:
        data = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True
    try:
        loads(data, max_depth)
    except TooDeep:
        return True
    return False


def deep_batch(data: bytes) -> tuple[Any, set[int]]:
    """A batch body deeper than MAX_DEPTH, parsed as far as orjson goes (1024 levels), and the
    indexes of the items that are too deep themselves (level 3 of the body: at most MAX_DEPTH - 2
    of their own), which the collector refuses alone, as it refuses an oversize item: SDKs drop a
    batch answered 400 whole. Anything else too deep (``context`` or ``integrations`` at the top,
    the body itself past orjson's limit) still refuses the whole body. Only bodies the exact
    check refused come here: the usual batch pays nothing."""
    body = orjson.loads(data)  # JSONDecodeError, "depth limit exceeded" included: the caller's 400s
    if type(body) is not dict:
        raise too_deep_error()
    for key, value in body.items():
        if key != "batch" and too_deep(value, MAX_DEPTH - 1):
            raise too_deep_error()
    batch = body.get("batch")
    if type(batch) is not list:
        raise too_deep_error()
    deep = {index for index, item in enumerate(batch) if too_deep(item, MAX_DEPTH - 2)}
    if not deep:  # the body's depth was in the batch array itself: not an item's fault
        raise too_deep_error()
    return body, deep

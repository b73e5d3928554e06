"""The audit log's filters, read from a query string: one parser for ``GET /api/v1/audit`` and
the web app's Audit log page, so both accept (and refuse) the same things.

``actor``, ``action`` (exact, or a prefix such as ``destination``), ``subject`` (exact such as
``destination:4``, or a type such as ``destination``), ``since`` / ``until`` (ISO 8601 date or
time; UTC when no offset is given; an ``until`` date includes that day), ``before`` (an entry id: the page after the one that ended
there) and ``limit`` (1-500, default 100). A bad value is a 400 ``invalid_parameter``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from server.errors import ApiError

PARAMETERS = [
    ("actor", "string", "who made the change: a user name, token:<name>, cli, api, system"),
    ("action", "string", "an action (destination.update) or its prefix (destination)"),
    ("subject", "string", "a subject (destination:4) or its type (destination)"),
    ("since", "string", "ISO 8601 date or time (UTC unless it has an offset): entries at or after it"),
    ("until", "string", "ISO 8601 date or time: entries before it (a date alone includes that day)"),
    ("before", "integer", "an entry id: the entries older than it (the next page)"),
    ("limit", "integer", "entries per page, 1-500 (default 100)"),
]


def _bad(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name} {message}", field=name)


def _time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(name, "must be an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _bad(name, f"must be a whole number from {low} to {high}")
    return value


def _text(name: str, raw: str) -> str | None:
    value = raw.strip()
    if len(value) > 300 or any(ord(c) < 32 for c in value):
        raise _bad(name, "must be at most 300 characters of text")
    return value or None


def filters(query: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``server.store.audit.list_entries`` (empty values mean "any")."""
    found: dict[str, Any] = {"limit": 100}
    for name in ("actor", "action", "subject"):
        if query.get(name):
            found[name] = _text(name, query[name])
    for name in ("since", "until"):
        raw = query.get(name, "").strip()
        if raw:
            found[name] = _time(name, raw)
            if name == "until" and len(raw) == 10:  # a date alone: up to the end of that day
                found[name] += timedelta(days=1)
    if query.get("before", "").strip():
        found["before_id"] = _int("before", query["before"], 1, 2**62)
    if query.get("limit", "").strip():
        found["limit"] = _int("limit", query["limit"], 1, 500)
    return found

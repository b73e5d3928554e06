"""Creating a regulation, validated once for the REST API, the web app and the CLI.

``create(engine, body, actor)`` takes the API's JSON shape — ``{"type", "user_ids",
"source_ids"?}`` — and raises ``ApiError(422, "validation_error", …, field=…)`` for anything
wrong, before anything is stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from server.errors import ApiError
from server.store import regulations, workspace

MAX_USERS = 1000  # per regulation: each one is a LIKE in the deletion's scan
# Any userId an event can carry: an event is at most 32 KB (server/ingest/body.py EVENT_LIMIT).
MAX_USER_ID = 32 * 1024


def _invalid(message: str, field: str) -> ApiError:
    return ApiError(422, "validation_error", message, field=field)


def validate(engine: Engine, body: Any) -> tuple[str, list[str], list[int] | None]:
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object", "body")
    unknown = sorted(set(body) - {"type", "user_ids", "source_ids"})
    if unknown:
        raise _invalid(f"Unknown field(s): {', '.join(unknown)}", unknown[0])
    kind = body.get("type")
    if kind not in regulations.TYPES:
        raise _invalid(f"type must be one of {', '.join(regulations.TYPES)}", "type")
    user_ids = body.get("user_ids")
    if not isinstance(user_ids, list) or not user_ids:
        raise _invalid("user_ids must be a non-empty list of userIds", "user_ids")
    if len(user_ids) > MAX_USERS:
        raise _invalid(f"At most {MAX_USERS} user_ids per regulation; split the request", "user_ids")
    for value in user_ids:
        # Any id the collector stores may be named, " " included (it refuses only "" and null).
        if not isinstance(value, str) or not value or len(value) > MAX_USER_ID:
            raise _invalid(f"Each user_id must be a non-empty string of at most {MAX_USER_ID} characters", "user_ids")
    source_ids = body.get("source_ids")
    if source_ids is not None:
        if not isinstance(source_ids, list) or not source_ids or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in source_ids):
            raise _invalid("source_ids, when given, must be a non-empty list of source ids (omit it for every source)",
                           "source_ids")
        known = {s["id"] for s in workspace.list_sources(engine)}
        missing = [s for s in source_ids if s not in known]
        if missing:
            raise _invalid(f"No source {missing[0]}", "source_ids")
        source_ids = sorted(set(source_ids))
    return kind, list(dict.fromkeys(user_ids)), source_ids


def create(engine: Engine, body: Any, actor: str) -> dict[str, Any]:
    kind, user_ids, source_ids = validate(engine, body)
    return regulations.create(engine, type=kind, user_ids=user_ids, source_ids=source_ids, actor=actor)

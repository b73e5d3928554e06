"""One read of the suppression list (server/store/regulations.py) for the debugger's "routed to":
is this userId suppressed for this source, and since when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from server.store.engine import read_only
from server.store.regulations import ALL_SOURCES, suppressions, user_key


def suppression_of(engine: Engine, user_id: Any, source_id: int) -> dict[str, Any] | None:
    """``{"regulation_id", "created_at"}`` of the suppression that covers ``user_id`` on this
    source (its own or an every-source one), or None."""
    if not isinstance(user_id, str) or not user_id:
        return None
    with read_only(engine) as conn:
        row = conn.execute(
            select(suppressions.c.regulation_id, suppressions.c.created_at)
            .where(suppressions.c.user_key == user_key(user_id), suppressions.c.source_id.in_((source_id, ALL_SOURCES)))
            .order_by(suppressions.c.created_at).limit(1)
        ).one_or_none()
    return None if row is None else {"regulation_id": row.regulation_id, "created_at": row.created_at}

"""How much room the store takes: its size on disk and the rows of its biggest tables.

SQLite: the database file plus its WAL. PostgreSQL: ``pg_database_size`` of the current
database. Row counts are exact (``count(*)``); callers that serve them often (``/metrics``)
cache the answer for a while, since counting a large log is not free.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, func, select, text

from server.store.delivery import DEAD, delivery_jobs
from server.store.engine import read_only
from server.store.events import events
from server.store.governance import governance_log


def store_bytes(engine: Engine) -> int:
    if engine.dialect.name == "postgresql":
        with read_only(engine) as conn:
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    path = engine.url.database or ""
    if not path or path == ":memory:":
        return 0
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def usage(engine: Engine) -> dict[str, Any]:
    """{"bytes", "rows": {events, delivery_jobs, dead_letters, governance_log}}."""
    with read_only(engine) as conn:
        rows = {
            "events": conn.execute(select(func.count()).select_from(events)).scalar_one(),
            "delivery_jobs": conn.execute(select(func.count()).select_from(delivery_jobs)).scalar_one(),
            "dead_letters": conn.execute(
                select(func.count()).select_from(delivery_jobs).where(delivery_jobs.c.status == DEAD)).scalar_one(),
            "governance_log": conn.execute(select(func.count()).select_from(governance_log)).scalar_one(),
        }
    return {"bytes": store_bytes(engine), "rows": rows}

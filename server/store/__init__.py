"""Storage: SQLAlchemy Core tables and queries, identical on SQLite and PostgreSQL.

``open_store(url)`` returns a migrated engine. Query modules (``workspace``, ``tokens``,
``events``, …) take that engine as their first argument; they import nothing from the planes.
"""

from __future__ import annotations

from sqlalchemy import Engine

from server.store.engine import make_engine
from server.store.migrations import migrate


def open_store(url: str, *, busy_timeout: float | None = None) -> Engine:
    engine = make_engine(url, busy_timeout=busy_timeout)
    migrate(engine)
    return engine

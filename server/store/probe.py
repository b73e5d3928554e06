"""Can the store take a write right now? ``/readyz`` asks by writing one row.

A read (``SELECT 1``) succeeds on a full disk, a read-only file system or a SQLite file another
process holds locked — exactly the cases where the collector can acknowledge nothing. So the
probe upserts the single row of ``store_probe``: that needs the write lock and a page of WAL
(SQLite) or a WAL record (PostgreSQL). On SQLite it waits at most ``PROBE_BUSY_MS`` for the
lock, not the engine's busy timeout: a readiness probe must answer quickly.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, Engine, Integer, Table, text

from server.store.schema import UTCDateTime, metadata

PROBE_BUSY_MS = 250

store_probe = Table(
    "store_probe",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("checked_at", UTCDateTime(), nullable=False),
)

_UPSERT = text(
    "INSERT INTO store_probe (id, checked_at) VALUES (1, :at) "
    "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at"
)


def probe_write(engine: Engine) -> None:
    """Write one row; raises the driver's error (wrapped by SQLAlchemy) when the store can't."""
    now = datetime.now(timezone.utc)
    sqlite = engine.dialect.name == "sqlite"
    at = now.isoformat(sep=" ", timespec="microseconds")[:26] if sqlite else now
    with engine.connect() as conn:
        # On the raw connection: through SQLAlchemy the PRAGMA would itself BEGIN IMMEDIATE and wait.
        raw = conn.connection.dbapi_connection if sqlite else None
        if raw is not None:
            usual = raw.execute("PRAGMA busy_timeout").fetchone()[0]
            raw.execute(f"PRAGMA busy_timeout={PROBE_BUSY_MS}")
        try:
            with conn.begin():
                conn.execute(_UPSERT, {"at": at})
        finally:
            if raw is not None:  # the connection goes back to the pool: give it its usual wait back
                raw.execute(f"PRAGMA busy_timeout={int(usual)}")

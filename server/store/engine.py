"""Engines for the two supported databases, tuned for durability.

SQLite: WAL journal, ``synchronous=FULL`` (a commit is fsynced before it returns, so the
collector's 200 really means "on disk"), foreign keys on, and a busy timeout so concurrent
writers wait instead of failing — a short one (``SWITCHBOARD_SQLITE_BUSY_TIMEOUT``, 5 s), so that
a file another process keeps locked costs a request a quick 503, not a 30 s hang. PostgreSQL: psycopg 3 with a small pool and pre-ping.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import QueuePool

SQLITE_BUSY_TIMEOUT_MS = 5_000  # default of SWITCHBOARD_SQLITE_BUSY_TIMEOUT: requests wait this at most


def make_engine(url: str, *, pool_size: int = 10, busy_timeout: float | None = None) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, int(busy_timeout * 1000) if busy_timeout else SQLITE_BUSY_TIMEOUT_MS)
    if url.startswith("postgresql://"):
        # Plain postgresql:// would pick psycopg2, which we do not ship.
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_engine(url: str, busy_ms: int) -> Engine:
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
        # Pooled: when a process closes its last connection SQLite checkpoints and deletes the
        # WAL file (with fsyncs), which made every commit ~5x slower under NullPool. A pooled
        # connection is used by one thread at a time (check_same_thread is off for the handover).
        **({} if memory else {"poolclass": QueuePool, "pool_size": 8, "max_overflow": 16}),
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # pragma: no cover - exercised by every test
        # pysqlite's own transaction handling defers BEGIN; take control so that
        # BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # pragma: no cover - exercised by every test
        # Readers (``read_only(engine)``) take no lock: WAL lets them run beside a writer.
        if conn.get_execution_options().get("read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def read_only(engine: Engine):
    """A connection for reads only: ``with read_only(engine) as conn: …``."""
    return engine.connect().execution_options(read_only=True)

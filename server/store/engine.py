"""Engines for the two supported databases, tuned for durability.

SQLite: WAL journal, ``synchronous=FULL`` (a commit is fsynced before it returns, so the
collector's 200 really means "on disk"; only the delivery plane's bookkeeping transactions relax
it, see ``bookkeeping``), foreign keys on, and a busy timeout so concurrent
writers wait instead of failing — a short one (``SWITCHBOARD_SQLITE_BUSY_TIMEOUT``, 5 s), so that
a file another process keeps locked costs a request a quick 503, not a 30 s hang. PostgreSQL: psycopg 3 with a small pool and pre-ping.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import QueuePool

SQLITE_BUSY_TIMEOUT_MS = 5_000  # default of SWITCHBOARD_SQLITE_BUSY_TIMEOUT: requests wait this at most


def make_engine(url: str, *, pool_size: int = 10, busy_timeout: float | None = None) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, int(busy_timeout * 1000) if busy_timeout else SQLITE_BUSY_TIMEOUT_MS)
    if url.startswith("postgresql://"):
        # Plain postgresql:// would pick psycopg2, which we do not ship.
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)

    @event.listens_for(engine, "begin")
    def _begin(conn):  # pragma: no cover - exercised by every PostgreSQL test
        if conn.get_execution_options().get("bookkeeping"):
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")  # this transaction only

    return engine


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
    def _pragmas(dbapi_connection, record):  # pragma: no cover - exercised by every test
        # pysqlite's own transaction handling defers BEGIN; take control so that
        # BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        record.info["synchronous"] = "FULL"  # a record that reconnects starts over (_sqlite_synchronous)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    turns = engine.dialect.writer_turns = WriterTurns(busy_ms / 1000)  # type: ignore[attr-defined]
    engine.dialect.do_commit = turns.after(engine.dialect.do_commit)  # type: ignore[method-assign]
    engine.dialect.do_rollback = turns.after(engine.dialect.do_rollback)  # type: ignore[method-assign]

    @event.listens_for(engine, "begin")
    def _begin(conn):  # pragma: no cover - exercised by every test
        # Readers (``read_only(engine)``) take no lock: WAL lets them run beside a writer.
        options = conn.get_execution_options()
        if options.get("read_only"):
            conn.exec_driver_sql("BEGIN")
            return
        _sqlite_synchronous(conn, "NORMAL" if options.get("bookkeeping") else "FULL")
        held = turns.take(conn.connection)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            turns.give_back(conn.connection, held)
            raise

    return engine


def _sqlite_synchronous(conn: Any, level: str) -> None:
    """Set the connection's ``synchronous`` for the transaction about to begin (a pragma SQLite
    takes only outside a transaction), issuing it only when it changes."""
    info = conn.connection.info
    if info.get("synchronous", "FULL") != level:
        conn.exec_driver_sql(f"PRAGMA synchronous={level}")
        info["synchronous"] = level


def bookkeeping(conn: Any) -> Any:
    """Mark ``conn`` (not yet begun) for a *bookkeeping* transaction: the delivery plane's own
    state, which no client was told about — leases, results, fan-out, heartbeats, a replay's
    queueing by the workers. It commits without waiting for the disk: ``synchronous=NORMAL`` on
    SQLite's WAL, ``synchronous_commit=off`` on PostgreSQL.

    Why that is safe: both databases then lose, on an operating-system crash or power cut (never
    on a process crash: kill -9 loses nothing), only the *last* transactions, in commit order —
    never one from the middle — and any later durable commit (an event's append) makes every
    earlier one durable too. What such a loss undoes is re-done: a fan-out's jobs and its cursor
    go together, so the events are fanned out again; a lost result sends its event again, which
    delivery at least once allows (``messageId`` dedupes). What a client was told (the
    collector's 200, a setting saved, a regulation or replay accepted) stays ``FULL``.

    Why it matters: a commit that waits for an ``fsync`` holds SQLite's one write lock for it
    (0.2–5 ms on the development machine's disk), and live events waited behind the claims and
    results of a history replay (bench/replay.py)."""
    return conn.execution_options(bookkeeping=True)


def writer_turns(engine: Engine) -> "WriterTurns | None":
    """The turns this process's writers take on ``engine`` (SQLite), None for PostgreSQL."""
    return getattr(engine.dialect, "writer_turns", None)


class WriterTurns:
    """This process's writers to one SQLite file take turns on a lock of their own before
    ``BEGIN IMMEDIATE``, so that the next one starts the moment the last one commits.

    Left to SQLite, a writer that finds the file locked sleeps in its busy handler, in steps of
    1, 2, 5, 10, 15, 20, 25 ms…, and looks again only when a step ends: a collision with a 4 ms
    commit cost the waiter 8 ms, one with a 9 ms commit 18 ms. Beside a history replay, whose
    claims and results add writers, that put live delivery's p99 at twice its usual
    (bench/replay.py). Writers of other processes still meet SQLite's busy handler; the lock
    covers the transactions that SQLAlchemy begins (the ``begin`` hook above) and ends (the
    dialect's commit and rollback, wrapped). A writer that waits longer than the busy timeout
    goes on to ``BEGIN IMMEDIATE`` without its turn, so this never fails where SQLite would not.
    """

    def __init__(self, timeout: float):
        self.lock, self.timeout = threading.Lock(), timeout
        self.holders: set[int] = set()  # ids of the DBAPI connections that hold the turn

    @staticmethod
    def _key(connection: Any) -> int:
        return id(getattr(connection, "driver_connection", None) or connection)

    def take(self, connection: Any) -> bool:
        if not self.lock.acquire(timeout=self.timeout):
            return False
        self.holders.add(self._key(connection))
        return True

    def give_back(self, connection: Any, held: bool = True) -> None:
        key = self._key(connection)
        if held and key in self.holders:
            self.holders.discard(key)
            self.lock.release()

    def after(self, finish):
        """``finish`` (the dialect's commit or rollback), then the turn passes on."""
        def wrapped(dbapi_connection: Any) -> None:
            try:
                finish(dbapi_connection)
            finally:
                self.give_back(dbapi_connection)
        return wrapped


def read_only(engine: Engine):
    """A connection for reads only: ``with read_only(engine) as conn: …``."""
    return engine.connect().execution_options(read_only=True)

"""Loading planned rows into a target database: SQLite (one file per source) or PostgreSQL
(one schema per source).

Each table of a batch is loaded in its own transaction: create the table or add its new
columns, then insert. Event tables dedupe on ``id`` (``INSERT … ON CONFLICT (id) DO NOTHING``),
so loading the same events twice adds nothing. ``users`` and ``accounts`` are upserted on
``id``: for every column the newer call's non-null value wins (newer by ``received_at``), so
replaying an older call never rolls a trait back.

Only one loader works on a given warehouse at a time: PostgreSQL targets take a session
advisory lock per destination, SQLite targets an exclusive ``flock`` on ``<file>.lock``. Both
are released by the operating system or the server if the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from server.warehouse import indexes
from server.warehouse.naming import quote
from server.warehouse.row_width import PG_MAX_ROW_BYTES
from server.warehouse.schema import TablePlan

LOCK_CLASS = 0x5B0A0002  # first key of the two-key advisory lock; the second is the destination id

PG_TYPES = {"boolean": "BOOLEAN", "integer": "BIGINT", "float": "DOUBLE PRECISION",
            "timestamp": "TIMESTAMPTZ", "text": "TEXT"}
SQLITE_TYPES = {"boolean": "BOOLEAN", "integer": "BIGINT", "float": "DOUBLE PRECISION",
                "timestamp": "TIMESTAMP", "text": "TEXT"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Busy(RuntimeError):
    """Another loader holds this warehouse's lock."""


def type_from_sql(declared: str) -> str:
    """Our type name for a column type read back from either database's catalog."""
    d = declared.lower()
    if d.startswith("bool"):
        return "boolean"
    if d in ("bigint", "integer", "int", "smallint", "int8", "int4"):
        return "integer"
    if d.startswith(("double", "real", "float", "numeric", "decimal")):
        return "float"
    if d.startswith(("timestamp", "date")):
        return "timestamp"
    return "text"


def sqlite_time(value: datetime) -> str:
    """UTC ISO-8601 with milliseconds and Z: sorts as text; SQLite's date functions read it."""
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" → "Z"


def _upsert_set(columns: list[str], alias: str = "cur") -> str:
    newer = f"excluded.received_at >= {alias}.received_at"
    parts = []
    for c in columns:
        q = quote(c)
        if c == "id":
            continue
        if c == "received_at":
            parts.append(f"{q} = CASE WHEN {newer} THEN excluded.{q} ELSE {alias}.{q} END")
        elif c == "uuid_ts":
            parts.append(f"{q} = excluded.{q}")
        else:
            parts.append(
                f"{q} = CASE WHEN {newer} THEN COALESCE(excluded.{q}, {alias}.{q}) "
                f"ELSE COALESCE({alias}.{q}, excluded.{q}) END"
            )
    return ", ".join(parts)


def _column_defs(plan: TablePlan, sql_types: dict[str, str], *, named_pkey: bool = False) -> str:
    """Column definitions of a new table; ``id`` is the primary key. PostgreSQL would name the
    key's index ``<table>_pkey``, a name a table could have: ``named_pkey`` names it (indexes.py)."""
    inline = "" if named_pkey else " PRIMARY KEY"
    defs = [f"{quote(c)} {sql_types[k]}" + (inline if c == "id" else "") for c, k in plan.add.items()]
    if named_pkey:
        defs.append(f"CONSTRAINT {quote(indexes.pkey_name(plan.table))} PRIMARY KEY (id)")
    return ", ".join(defs)


class SqliteTarget:
    """A SQLite file (WAL, so any SQLite tool can read it while we write)."""

    kind = "sqlite"
    max_row_bytes: int | None = None  # SQLite rows may hold up to a gigabyte

    def __init__(self, path: str | Path, destination_id: int):
        self.path = Path(path)
        self.destination_id = destination_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self._indexed: set[str] = set()  # tables known to have their received_at index

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    def fingerprint(self) -> str:
        return _digest(f"sqlite:{self.path.resolve()}")

    @contextlib.contextmanager
    def lock(self, wait: bool) -> Iterator[None]:
        fd = os.open(f"{self.path}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise Busy(f"another loader is writing {self.path}") from None
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def existing_columns(self) -> dict[str, dict[str, str]]:
        rows = self.conn.execute(
            "SELECT m.name, p.name, p.type FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
            "WHERE m.type = 'table'"
        ).fetchall()
        found: dict[str, dict[str, str]] = {}
        for table, column, declared in rows:
            found.setdefault(table, {})[column] = type_from_sql(declared)
        return found

    def load(self, plan: TablePlan, upsert: bool) -> int:
        table = quote(plan.table)
        cols = ", ".join(quote(c) for c in plan.columns)
        marks = ", ".join("?" for _ in plan.columns)
        if upsert:
            sql = (f"INSERT INTO {table} AS cur ({cols}) VALUES ({marks}) "
                   f"ON CONFLICT (id) DO UPDATE SET {_upsert_set(plan.columns)}")
        else:
            sql = f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"
        rows = plan.rows
        texts: dict[datetime, str] = {}  # rows share times (uuid_ts; timestamp = original_timestamp)
        for i, column in enumerate(plan.columns):
            if plan.types[column] == "timestamp":
                for row in rows:
                    value = row[i]
                    if value is not None:
                        text = texts.get(value)
                        if text is None:
                            text = texts[value] = sqlite_time(value)
                        row[i] = text
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if plan.create:
                indexes.sqlite_free_name(cur, plan.table)
                cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({_column_defs(plan, SQLITE_TYPES)})")
            else:
                for column, kind in plan.add.items():
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)} {SQLITE_TYPES[kind]}")
            if plan.table not in self._indexed and not indexes.sqlite_has_index(cur, plan.table):
                cur.execute(f"CREATE INDEX IF NOT EXISTS {quote(indexes.index_name(plan.table))} "
                            f"ON {table} (received_at)")
            cur.executemany(sql, rows)
            count = cur.rowcount
            cur.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        self._indexed.add(plan.table)
        return count

    def close(self) -> None:
        self.conn.close()


class PostgresTarget:
    """A PostgreSQL database; the source's tables live in their own schema."""

    kind = "postgresql"
    max_row_bytes: int | None = PG_MAX_ROW_BYTES  # one heap tuple (row_width.py)

    def __init__(self, url: str, schema: str, destination_id: int, *, allow_private_egress: bool = True,
                 resolver=None):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from server.warehouse.egress import checked_params, system_resolver

        scheme, sep, rest = url.partition("://")
        conninfo = scheme.split("+")[0] + sep + rest
        if allow_private_egress:
            self.conn = psycopg.connect(conninfo, autocommit=True)
        else:  # the egress rules at connection time (server/warehouse/egress.py)
            params = checked_params(conninfo_to_dict(conninfo), resolver or system_resolver)
            self.conn = psycopg.connect(make_conninfo(**params), autocommit=True)
        self.schema = schema
        self.destination_id = destination_id
        self._host = f"{self.conn.info.host}:{self.conn.info.port}/{self.conn.info.dbname}"
        self._indexed: set[str] = set()  # tables known to have their received_at index

    def describe(self) -> str:
        return f"PostgreSQL {self._host} schema {self.schema}"

    def fingerprint(self) -> str:
        return _digest(f"postgresql:{self._host}:{self.schema}")

    @contextlib.contextmanager
    def lock(self, wait: bool) -> Iterator[None]:
        key = (LOCK_CLASS, self.destination_id)
        if wait:
            self.conn.execute("SELECT pg_advisory_lock(%s, %s)", key)
        elif not self.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()[0]:
            raise Busy(f"another loader is writing {self.describe()}")
        try:
            yield
        finally:
            # A lost connection has lost the lock too: nothing to release then.
            with contextlib.suppress(Exception):
                self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)

    def existing_columns(self) -> dict[str, dict[str, str]]:
        # Called under the lock, so two loaders never race to create the schema.
        self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
        rows = self.conn.execute(
            # In table order: the row size limit (row_width.py) follows the order of the columns.
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
            "ORDER BY table_name, ordinal_position",
            (self.schema,),
        ).fetchall()
        found: dict[str, dict[str, str]] = {}
        for table, column, declared in rows:
            found.setdefault(table, {})[column] = type_from_sql(declared)
        return found

    def load(self, plan: TablePlan, upsert: bool) -> int:
        table = f"{quote(self.schema)}.{quote(plan.table)}"
        cols = ", ".join(quote(c) for c in plan.columns)
        stage_defs = ", ".join(f"{quote(c)} {PG_TYPES[plan.types[c]]}" for c in plan.columns)
        if upsert:
            insert = (f"INSERT INTO {table} AS cur ({cols}) SELECT {cols} FROM _stage "
                      f"ON CONFLICT (id) DO UPDATE SET {_upsert_set(plan.columns)}")
        else:
            insert = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _stage ON CONFLICT (id) DO NOTHING"
        with self.conn.transaction(), self.conn.cursor() as cur:
            if plan.create:
                indexes.pg_free_name(cur, self.schema, plan.table)
                cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({_column_defs(plan, PG_TYPES, named_pkey=True)})")
            else:
                for column, kind in plan.add.items():
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {quote(column)} {PG_TYPES[kind]}")
            if plan.table not in self._indexed and not indexes.pg_has_index(cur, self.schema, plan.table):
                cur.execute(f"CREATE INDEX IF NOT EXISTS {quote(indexes.index_name(plan.table))} "
                            f"ON {table} (received_at)")
            # COPY into a temporary table, then one INSERT … SELECT: far faster than row inserts.
            cur.execute(f"CREATE TEMP TABLE _stage ({stage_defs}) ON COMMIT DROP")
            with cur.copy(f"COPY _stage ({cols}) FROM STDIN") as copy:
                for row in plan.rows:
                    copy.write_row(row)
            cur.execute(insert)
            count = cur.rowcount
        self._indexed.add(plan.table)
        return count

    def close(self) -> None:
        self.conn.close()

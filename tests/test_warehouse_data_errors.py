"""Which failures are about the data (the event is skipped) and which about the warehouse (the
sync fails and retries everything): server/warehouse/data_errors.py, on errors the two
databases really raise."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from server.warehouse.data_errors import describe, is_data_error


def _sqlite_error(db, sql) -> sqlite3.Error:
    try:
        db.execute(sql)
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{sql} did not fail")


def test_sqlite_errors(tmp_path):
    db = sqlite3.connect(tmp_path / "w.db", isolation_level=None, timeout=0.05)
    db.execute("CREATE TABLE t (n INTEGER CHECK (n < 10))")
    db.execute("CREATE TRIGGER no BEFORE INSERT ON t WHEN NEW.n = 5 BEGIN SELECT RAISE(ABORT, 'no five'); END")
    assert is_data_error(_sqlite_error(db, "INSERT INTO t VALUES (11)"))        # CHECK
    assert is_data_error(_sqlite_error(db, "INSERT INTO t VALUES (5)"))         # a trigger's RAISE(ABORT)
    assert is_data_error(_sqlite_error(db, "CREATE TABLE sqlite_x (a)"))        # a reserved name
    assert is_data_error(_sqlite_error(db, "INSERT INTO missing VALUES (1)"))   # no such table
    other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    busy = _sqlite_error(db, "BEGIN IMMEDIATE")
    assert "locked" in str(busy) and not is_data_error(busy)                    # another writer
    other.execute("ROLLBACK")


@pytest.mark.postgres
def test_postgresql_errors(pg):
    url = pg.create_database().replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE t (n BIGINT CHECK (n < 10), email TEXT)")

        def error(sql):
            try:
                db.execute(sql)
            except psycopg.Error as exc:
                return exc
            raise AssertionError(f"{sql} did not fail")

        check = error("INSERT INTO t VALUES (11, 'ada@example.com')")
        assert is_data_error(check)
        # Only the primary message is kept: DETAIL would repeat the row's values.
        assert describe(check) == 'CheckViolation: new row for relation "t" violates check constraint "t_n_check"'
        assert "ada@example.com" in str(check)
        assert is_data_error(error("ALTER TABLE t ADD COLUMN xmin BIGINT"))            # 42701
        assert is_data_error(error("CREATE SCHEMA pg_shop"))                           # 42939
        assert is_data_error(error("SELECT 1 / 0"))                                    # 22012
        assert is_data_error(error("DO $$ BEGIN RAISE EXCEPTION 'refused'; END $$"))   # P0001
        for code in ("disk_full", "lock_not_available", "insufficient_privilege", "admin_shutdown",
                     "serialization_failure", "query_canceled", "internal_error"):
            assert not is_data_error(error(f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{code}'; END $$")), code
    lost = psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
    assert not is_data_error(lost)
    assert is_data_error(psycopg.DataError("cannot dump")) and is_data_error(psycopg.ProgrammingError("cannot adapt"))


def test_python_errors():
    assert is_data_error(OverflowError("date value out of range"))
    assert is_data_error(ValueError("bad")) and is_data_error(TypeError("bad")) and is_data_error(KeyError("x"))
    assert not is_data_error(OSError("No space left on device"))
    assert not is_data_error(MemoryError())
    assert not is_data_error(RuntimeError("something else"))

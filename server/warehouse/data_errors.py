"""Whether a failed load is about the data (skip the event) or about the warehouse (retry later).

A sync that fails keeps its cursor, and the next sync retries the same events. That is right
when the warehouse is the problem: a lost connection, a server restarting, a lock, a full disk,
a revoked permission. Nothing may be skipped then, or a short outage would lose data. But when
one event is the problem (a value the warehouse refuses, a name it cannot take, a constraint or
trigger someone added), retrying changes nothing: the sync fails again, for ever, and nothing
logged after that event ever arrives. Those errors are "about the data": the loader finds the
events to blame and skips them (isolation.py).

About the data:

* PostgreSQL, by SQLSTATE class: 22 data exception, 23 integrity constraint, 42 syntax error or
  access rule (a name, a type, a duplicate column — but not 42501, a missing privilege),
  54 program limit (row too big, too many columns), 09 / 27 / 2F / 38 / 39 / P0 errors raised by
  triggers and functions, 44 check option. Every other class (08 connection, 40 rollback,
  53 resources, 55 lock, 57 operator intervention, 58 system, XX internal, …) is about the
  warehouse. Of psycopg's own errors (no SQLSTATE), ``DataError`` and ``ProgrammingError`` (a
  value it cannot send) are about the data, the rest (the connection is gone) are not.
* SQLite, by primary result code: ERROR (schema problems), CONSTRAINT (CHECK, NOT NULL, a
  trigger's RAISE(ABORT)), MISMATCH, TOOBIG, RANGE. BUSY, LOCKED, IOERR, FULL, READONLY,
  CANTOPEN, CORRUPT, NOMEM, … are about the warehouse.
* Python's own ``ValueError``, ``TypeError``, ``ArithmeticError`` (``OverflowError``),
  ``LookupError`` and ``RecursionError`` raised by our code while it turns events into rows or
  loads them: a value it could not handle. ``OSError`` or ``MemoryError`` are about the machine.
"""

from __future__ import annotations

import sqlite3

PG_DATA_CLASSES = frozenset({"22", "23", "42", "54", "09", "27", "2F", "38", "39", "P0", "44"})
PG_NOT_DATA = frozenset({"42501"})  # insufficient_privilege: the warehouse's setup, not the event

# SQLite primary result codes (https://sqlite.org/rescode.html).
SQLITE_DATA_CODES = frozenset({1, 18, 19, 20, 25})  # ERROR, TOOBIG, CONSTRAINT, MISMATCH, RANGE

PYTHON_DATA_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, RecursionError)


def is_data_error(exc: BaseException) -> bool:
    """True when retrying ``exc`` later cannot help: the data is what the warehouse refuses."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:  # raised by Python's sqlite3 module itself: binding a value it cannot take
            return isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.DataError))
        return code & 0xFF in SQLITE_DATA_CODES
    import psycopg  # the PostgreSQL driver (a dependency, loaded by the first PostgreSQL target)

    if isinstance(exc, psycopg.Error):
        state = getattr(exc, "sqlstate", None)
        if not state:
            return isinstance(exc, (psycopg.DataError, psycopg.ProgrammingError))  # could not send a value
        return state[:2] in PG_DATA_CLASSES and state not in PG_NOT_DATA
    return isinstance(exc, PYTHON_DATA_ERRORS)


def describe(exc: BaseException, limit: int = 300) -> str:
    """A one-line account of ``exc`` for the sync history: its type and primary message.

    PostgreSQL's DETAIL lines ("Failing row contains (…)") are left out: they repeat the row's
    values, personal data that has no place in Switchboard's own database.
    """
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {message}"[:limit]

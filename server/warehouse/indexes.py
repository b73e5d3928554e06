"""The indexes the loader gives warehouse tables, and names for them that no table can have.

Tables and indexes share one namespace (a PostgreSQL schema, a SQLite file). Older versions
named a table's index ``<table[:45]>_received_at_idx`` and let PostgreSQL name its primary key
``<table>_pkey``, so an event called ``Clicked Received At Idx`` (table
``clicked_received_at_idx``), ``Signup Pkey`` or just ``Tracks Pkey`` could never get its table
("… is an index"); and tables whose names shared 45 characters shared one index name, so the
second one got no index at all.

Every table name the naming rules produce is snake_case with single underscores between
words (go-snakecase never writes two in a row; see naming.py). Our names join table and
purpose with two: ``clicked__received_at_idx``, ``clicked__pkey``. A name longer than
PostgreSQL's 63 bytes is cut and ends with a hash of the whole table name
(``<cut>__received_at_idx_<hash>``), so two long tables never share one.

Warehouses loaded by older versions keep their indexes as they are (a table that has an
index on ``received_at`` gets no second one, whatever its name). Only when a new table needs
a name that an old index of ours holds is that index renamed (PostgreSQL) or rebuilt under
its new name (SQLite, which cannot rename an index). A table that has no ``received_at``
index (the second of two long names, under an older version) gets one on its next load.
"""

from __future__ import annotations

import hashlib

from server.warehouse.naming import MAX_IDENTIFIER, quote

INDEX_PURPOSE = "received_at_idx"
PKEY_PURPOSE = "pkey"


def _name(table: str, purpose: str) -> str:
    name = f"{table}__{purpose}"
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:12]
    keep = MAX_IDENTIFIER - len(purpose) - 2 - 1 - len(digest)
    return f"{table[:keep]}__{purpose}_{digest}"


def index_name(table: str) -> str:
    """The name of ``table``'s index on received_at."""
    return _name(table, INDEX_PURPOSE)


def pkey_name(table: str) -> str:
    """The name of ``table``'s primary key constraint (PostgreSQL; its index has the name too)."""
    return _name(table, PKEY_PURPOSE)


# ---------------------------------------------------------------- SQLite


def sqlite_has_index(cur, table: str) -> bool:
    """Whether ``table`` has an index whose first column is received_at (any name)."""
    return cur.execute(
        "SELECT 1 FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii "
        "WHERE ii.seqno = 0 AND ii.name = 'received_at' LIMIT 1", (table,)
    ).fetchone() is not None


def sqlite_free_name(cur, table: str) -> None:
    """If an older version's received_at index holds the name ``table``, rebuild it under its
    new name so the table can be created. Anything else holding the name is left alone (the
    load then fails, and the sync says why)."""
    found = cur.execute(
        "SELECT m.name, m.tbl_name FROM sqlite_master AS m WHERE m.type = 'index' AND lower(m.name) = ?",
        (table,),
    ).fetchone()
    if found is None:
        return
    old, owner = found
    columns = [r[0] for r in cur.execute("SELECT name FROM pragma_index_info(?)", (old,))]
    if columns != ["received_at"]:
        return
    cur.execute(f"DROP INDEX {quote(old)}")
    cur.execute(f"CREATE INDEX IF NOT EXISTS {quote(index_name(owner))} ON {quote(owner)} (received_at)")


# ---------------------------------------------------------------- PostgreSQL


def pg_has_index(cur, schema: str, table: str) -> bool:
    """Whether ``schema.table`` has an index whose first column is received_at (any name)."""
    return cur.execute(
        "SELECT 1 FROM pg_index AS i JOIN pg_class AS t ON t.oid = i.indrelid "
        "JOIN pg_namespace AS n ON n.oid = t.relnamespace "
        "JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] "
        "WHERE n.nspname = %s AND t.relname = %s AND a.attname = 'received_at' LIMIT 1",
        (schema, table),
    ).fetchone() is not None


def pg_free_name(cur, schema: str, table: str) -> None:
    """If an older version's index (a table's primary key or received_at index) holds the name
    ``table``, rename it to its new name so the table can be created."""
    found = cur.execute(
        "SELECT t.relname, i.indisprimary, a.attname FROM pg_class AS c "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace JOIN pg_index AS i ON i.indexrelid = c.oid "
        "JOIN pg_class AS t ON t.oid = i.indrelid "
        "JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indnatts = 1",
        (schema, table),
    ).fetchone()
    if found is None:
        return
    owner, primary, column = found
    if primary:
        new = pkey_name(owner)  # renaming a primary key's index renames the constraint too
    elif column == "received_at":
        new = index_name(owner)
    else:
        return
    cur.execute(f"ALTER INDEX {quote(schema)}.{quote(table)} RENAME TO {quote(new)}")

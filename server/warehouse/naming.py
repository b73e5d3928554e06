"""Table and column names as Segment's warehouses spell them.

* every name goes through go-snakecase (``snakecase.py``);
* nested objects are flattened: the key path is joined with ``_`` and the joined path is
  snake-cased (``context.app.version`` → ``context_app_version``; ``nestedA.nestedB`` →
  ``nested_a_nested_b``); arrays are kept whole, as JSON text;
* a name that is an SQL reserved word, a PostgreSQL system column (``xmin``, ``ctid``, …) or
  starts with a digit gets a ``_`` prefix (``open`` → ``_open``, ``3doctors`` → ``_3doctors``),
  as Segment does on Redshift;
* an event table that would be a standard table or start with ``sqlite_`` gets a ``_`` prefix;
* PostgreSQL cuts identifiers at 63 bytes; we cut them ourselves so both targets agree.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from server.warehouse.snakecase import snakecase

MAX_IDENTIFIER = 63

# PostgreSQL's reserved key words, plus the Redshift ones Segment documents prefixing (open, …).
RESERVED = frozenset("""
    all analyse analyze and any array as asc asymmetric authorization binary both case cast check
    collate collation column concurrently constraint create cross current_catalog current_date
    current_role current_schema current_time current_timestamp current_user default deferrable desc
    distinct do else end except false fetch for foreign freeze from full grant group having ilike in
    initially inner intersect into is isnull join lateral leading left like limit localtime
    localtimestamp natural not notnull null offset on only or order outer overlaps placing primary
    references returning right select session_user similar some symmetric table tablesample then to
    trailing true union unique user using variadic verbose when where window with
    open new old off offline percent delta tag
""".split()) | frozenset(
    # PostgreSQL's system columns: a table cannot have a column of that name ("conflicts with a
    # system column name"). oid is one only in tables made WITH OIDS (before PostgreSQL 12).
    # Prefixed on SQLite too: one rule, so a warehouse moved between targets keeps its columns.
    "tableoid xmin cmin xmax cmax ctid oid".split()
)

# The tables every warehouse has; an event whose name snake-cases to one of these gets "_".
STANDARD_TABLES = frozenset(
    ["identifies", "users", "groups", "accounts", "aliases", "pages", "screens", "tracks"]
)


@lru_cache(maxsize=65536)  # the same paths come back in every event
def identifier(name: str) -> str:
    """A snake_case SQL name for ``name`` ('' when nothing of it survives)."""
    return _whole_identifier(name)[:MAX_IDENTIFIER]


def _whole_identifier(name: str) -> str:
    ident = snakecase(name)
    if ident and (ident in RESERVED or ident[0].isdigit()):
        ident = "_" + ident
    return ident


def event_table(event_name: str) -> str:
    """The per-event table of a track call: ``Order Completed`` → ``order_completed``.

    A name that would be a standard table gets ``_`` (``Pages`` → ``_pages``), and so does one
    starting with ``sqlite_`` (``SQLite Error`` → ``_sqlite_error``): SQLite refuses to create
    such tables ("reserved for internal use"). One rule on both targets, so a warehouse moved
    from one to the other keeps its table names.
    """
    return _whole_event_table(event_name)[:MAX_IDENTIFIER]


def event_table_was_cut(event_name: str) -> bool:
    """Whether the event's table name was cut at 63 bytes (names differing after that share it)."""
    return len(_whole_event_table(event_name)) > MAX_IDENTIFIER


def _whole_event_table(event_name: str) -> str:
    table = _whole_identifier(event_name)
    if table in STANDARD_TABLES or table.startswith("sqlite_"):
        table = "_" + table
    return table


def schema_name(source_slug: str) -> str:
    """The PostgreSQL schema of a source (its slug, made a safe identifier).

    PostgreSQL reserves schema names starting with ``pg_`` (``unacceptable schema name``), and
    ``information_schema`` is its own: those get a ``_`` prefix (``PG Shop`` → ``_pg_shop``).
    Every other slug is its schema's name unchanged.
    """
    schema = identifier(source_slug) or "source"
    if schema.startswith("pg_") or schema == "information_schema":
        schema = ("_" + schema)[:MAX_IDENTIFIER]
    return schema


def flatten(obj: dict[str, Any], prefix: str = "", unnamed: list[str] | None = None) -> list[tuple[str, Any]]:
    """(column, value) for every non-null leaf of ``obj``; nested dicts joined with ``_``.

    Arrays become JSON text (Segment stringifies them). Values that are null produce no
    column at all: Segment creates a column only when it sees a non-null value. A leaf whose
    path has no ASCII letter or digit (``名前``) has no column name: it is left out, and its
    key is added to ``unnamed`` when given.
    """
    out: list[tuple[str, Any]] = []
    _flatten(obj, prefix, out, unnamed)
    return out


# (prefix, key) → column: saves building and hashing the joined path for every leaf of every
# event. Bounded: cleared when it grows past what any real schema needs.
_COLUMNS: dict[tuple[str, str], str] = {}
_COLUMNS_MAX = 100_000


def _flatten(obj: dict[str, Any], prefix: str, out: list[tuple[str, Any]], unnamed: list[str] | None) -> None:
    # A plain recursive append (not a generator): this runs for every leaf of every event.
    for key, value in obj.items():
        if value is None:
            continue
        if isinstance(value, dict):
            _flatten(value, f"{prefix}_{key}" if prefix else str(key), out, unnamed)
            continue
        column = _COLUMNS.get((prefix, key))
        if column is None:
            if len(_COLUMNS) > _COLUMNS_MAX:
                _COLUMNS.clear()
            column = _COLUMNS[(prefix, key)] = identifier(f"{prefix}_{key}" if prefix else str(key))
        if column:
            out.append((column, orjson.dumps(value).decode() if isinstance(value, (list, tuple)) else value))
        elif unnamed is not None:
            unnamed.append(f"{prefix}.{key}" if prefix else str(key))


def quote(name: str) -> str:
    """Double-quote an identifier (both SQLite and PostgreSQL accept the standard form)."""
    return '"' + name.replace('"', '""') + '"'

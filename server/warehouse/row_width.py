"""PostgreSQL's row size limit: the values of a row that fit in one heap tuple.

PostgreSQL stores a row in one 8 kB page: at most 8,160 bytes (``row is too big: size 9840,
maximum size 8160``), and no setting changes that. A row holds a 23-byte header plus a null
bitmap, then every non-null value: ``BIGINT``, ``DOUBLE PRECISION`` and ``TIMESTAMPTZ`` take 8
bytes, aligned to 8; ``BOOLEAN`` 1; ``TEXT`` of up to 23 bytes its bytes plus 1. Longer text is
compressed or moved out of the row (TOAST), but something stays behind: an 18-byte pointer, or
the compressed value itself when that is 24 bytes or less (aligned to 4). So 1,200 integer
properties (1,015 fit) or 500 text properties of 20 characters (about 400 fit) in one event
cannot be stored as one row, however high ``column_limit`` is.

Rather than fail the load (every later sync would fail on that event too), the values a row
cannot hold are stored as null, with a notice: the table's columns are walked in their order
in the table, the call's own columns (id, times, event, …) are always kept, and each other value
is kept while the row still fits. The estimate takes the most each value can leave in the row
(24 bytes and alignment for long text, whether or not it compresses) and the largest header
(a null bitmap for 1,600 columns), so a row it accepts always fits. SQLite has no such limit
(a row may hold a gigabyte); there nothing is left out.
"""

from __future__ import annotations

from typing import Any, Callable

PG_MAX_ROW_BYTES = 8160
_HEADER = 224                 # 23-byte header + a null bitmap for 1,600 columns, aligned to 8
_SHORT_TEXT = 23              # a text value of up to this many bytes stays in the row as it is (+1)
_LONG_TEXT = 24               # the most a longer one leaves in the row (compressed, aligned to 4)
_FIXED = {"integer": 8, "float": 8, "timestamp": 8, "boolean": 1}
_WIDEST = 27                  # no value costs more (long text with padding; an 8-byte one: 15)

Notice = Callable[[str], None]


def row_bytes(kinds: list[str], values: list[Any]) -> int:
    """The most a row of these values (in table order, None for null) takes once stored."""
    offset = _HEADER
    for kind, value in zip(kinds, values):
        if value is not None:
            offset = _add(offset, kind, value)
    return offset


def _add(offset: int, kind: str, value: Any) -> int:
    """Where the row ends once ``value`` is added after ``offset`` bytes (at most)."""
    if kind == "text":
        if len(value) <= _SHORT_TEXT:
            size = len(value) if value.isascii() else len(value.encode())
            if size <= _SHORT_TEXT:
                return offset + size + 1
        return ((offset + 3) & ~3) + _LONG_TEXT
    size = _FIXED[kind]
    if size == 8:
        offset = (offset + 7) & ~7
    return offset + size


def _most(kind: str, value: Any) -> int:
    """The most a value can add to a row, wherever it stands (alignment padding included)."""
    return _add(1, kind, value) - 1


def trim_wide_rows(table: str, columns: list[str], types: dict[str, str], rows: list[list[Any]],
                   kept: set[str], limit: int, notice: Notice) -> set[str]:
    """Null, in place, the values that would make a row longer than ``limit`` bytes; return
    the columns that lost a value.

    ``columns`` is the order of the values in ``rows``; ``types`` lists every column of the
    table in its order in the table; columns in ``kept`` (the call's own) are never left out.
    """
    if _HEADER + _WIDEST * len(columns) <= limit:
        return set()  # too few columns to ever fill a row: the usual case, decided once per table
    position = {column: i for i, column in enumerate(columns)}
    order = [(position[c], types[c], c in kept, c) for c in types if c in position]
    kinds = [kind for _, kind, _, _ in order]
    trimmed: dict[str, None] = {}
    wide = 0
    for row in rows:
        values = [row[i] for i, _, _, _ in order]
        if row_bytes(kinds, values) <= limit:
            continue
        wide += 1
        # In table order, each value is kept while the row, with room for the call's own
        # columns still to come, fits; the call's own columns always are.
        reserve = [0] * (len(order) + 1)
        for j in range(len(order) - 1, -1, -1):
            _, kind, keep, _ = order[j]
            reserve[j] = reserve[j + 1] + (_most(kind, values[j]) if keep and values[j] is not None else 0)
        offset = _HEADER
        for j, ((index, kind, keep, column), value) in enumerate(zip(order, values)):
            if value is None:
                continue
            after = _add(offset, kind, value)
            if keep or after + reserve[j + 1] <= limit:
                offset = after
            else:
                row[index] = None
                trimmed.setdefault(column)
    if wide:
        shown = ", ".join(list(trimmed)[:5]) + (", …" if len(trimmed) > 5 else "")
        notice(f"{table}: {wide} row{'s' if wide != 1 else ''} would pass PostgreSQL's {limit:,}-byte row "
               f"limit; values left out (stored as null) in {len(trimmed)} column{'s' if len(trimmed) != 1 else ''}: "
               f"{shown}")
    return set(trimmed)

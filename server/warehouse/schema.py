"""Schema evolution for one table and one batch: which columns to create, their types, and
every row made to fit them.

The target's own catalog is the truth about what exists (read at the start of each load, as
Segment "validate[s] the structure on each connector run"); the registry in the store records
each column and its type once it exists. A new column takes the type of its first non-null
value in the batch; a column whose values are all null is not created (Segment creates "a
column only when it receives a non-null value"). Past the per-table column limit, new columns
are left out and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from server.warehouse.row_width import trim_wide_rows
from server.warehouse.transform import FIXED_TYPES
from server.warehouse.types import Unfit, fit, infer

Notice = Callable[[str], None]


@dataclass
class TablePlan:
    table: str
    create: bool                       # the table does not exist yet
    add: dict[str, str]                # new columns (including all of them when creating)
    columns: list[str]                 # column order of ``rows``
    types: dict[str, str]              # type of every column in ``columns``
    rows: list[list[Any]] = field(default_factory=list)


def plan_table(
    table: str,
    rows: list[dict[str, Any]],
    existing: dict[str, str] | None,
    column_limit: int,
    notice: Notice,
    max_row_bytes: int | None = None,
) -> TablePlan:
    """Decide the columns of ``table`` for these rows and convert every value.

    ``max_row_bytes`` (PostgreSQL's row size limit, row_width.py): values a row cannot hold are
    left out, and a new column left without any value is not created."""
    known = dict(existing or {})
    order: dict[str, None] = {}  # every column in order of first appearance
    for row in rows:
        if not row.keys() <= order.keys():
            for column in row:
                order.setdefault(column)
    first_values = {
        column: next((v for r in rows if (v := r.get(column)) is not None), None) for column in order
    }

    add: dict[str, str] = {}
    room = max(column_limit - len(known), 0)
    # Standard columns first: a table always gets them, and they count toward the limit.
    ordered = sorted(first_values.items(), key=lambda item: item[0] not in FIXED_TYPES)
    for column, value in ordered:
        if column in known:
            continue
        kind = FIXED_TYPES.get(column)
        if kind is None:
            if value is None:
                continue
            kind = infer(value)
        if column not in FIXED_TYPES:  # the standard columns always fit: a table needs them
            if room <= 0:
                notice(f"{table}.{column}: not created, the table reached its limit of {column_limit} columns")
                continue
        room -= 1
        add[column] = kind
    types = {**known, **add}
    columns = [c for c in first_values if c in types]
    plan = TablePlan(table=table, create=existing is None, add=add, columns=columns, types=types)

    plan.rows = [list(map(row.get, columns)) for row in rows]
    for index, column in enumerate(columns):
        _fit_column(plan, index, column, notice)
    if max_row_bytes:
        trimmed = trim_wide_rows(table, columns, types, plan.rows, FIXED_TYPES.keys() & types.keys(),
                                 max_row_bytes, notice)
        _drop_empty_new_columns(plan, trimmed)
    return plan


def _drop_empty_new_columns(plan: TablePlan, candidates: set[str]) -> None:
    """Columns to be created whose every value was left out: not created after all."""
    index = {c: i for i, c in enumerate(plan.columns)}
    empty = {c for c in candidates if c in plan.add and all(r[index[c]] is None for r in plan.rows)}
    if not empty:
        return
    keep = [i for i, c in enumerate(plan.columns) if c not in empty]
    plan.columns = [plan.columns[i] for i in keep]
    plan.rows = [[row[i] for i in keep] for row in plan.rows]
    plan.add = {c: k for c, k in plan.add.items() if c not in empty}
    plan.types = {c: k for c, k in plan.types.items() if c not in empty}


# The Python type a value of each column type already has when it needs no conversion.
_NATIVE = {"text": str, "integer": int, "float": float, "boolean": bool, "timestamp": datetime}
_INT64 = (-(2**63), 2**63 - 1)


def _fit_column(plan: TablePlan, index: int, column: str, notice: Notice) -> None:
    """Convert one column of every row in place; values that cannot fit become null."""
    kind = plan.types[column]
    native = _NATIVE[kind]
    rows = plan.rows
    # Column-wise and in a comprehension: most values are already right, so only find the rest.
    if kind == "text":
        odd = [r for r in rows if (v := r[index]) is not None and (type(v) is not str or "\x00" in v)]
    elif kind == "integer":
        odd = [r for r in rows if (v := r[index]) is not None
               and (type(v) is not int or not _INT64[0] <= v <= _INT64[1])]
    else:
        odd = [r for r in rows if (v := r[index]) is not None and type(v) is not native]
    reported = False
    for row in odd:
        try:
            row[index] = fit(row[index], kind)
        except Unfit as exc:
            if not reported:
                reported = True
                notice(f"{plan.table}.{column}: {exc}; stored as null")
            row[index] = None

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
from typing import Any, Callable

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
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def plan_table(
    table: str,
    rows: list[dict[str, Any]],
    existing: dict[str, str] | None,
    column_limit: int,
    notice: Notice,
) -> TablePlan:
    """Decide the columns of ``table`` for these rows and convert every value."""
    known = dict(existing or {})
    first_values: dict[str, Any] = {}
    for row in rows:
        for column, value in row.items():
            if column not in first_values or (first_values[column] is None and value is not None):
                first_values[column] = value

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

    reported: set[str] = set()
    for row in rows:
        values = []
        for column in columns:
            value = row.get(column)
            if value is not None:
                try:
                    value = fit(value, types[column])
                except Unfit as exc:
                    if column not in reported:
                        reported.add(column)
                        notice(f"{table}.{column}: {exc}; stored as null")
                    value = None
            values.append(value)
        plan.rows.append(tuple(values))
    return plan

"""One batch of logged events → rows per table → one load (one transaction per table).

Events a caller switched off for this destination (``integrations: {"Warehouse": false}``, or
``All: false`` without naming it) are left out. ``users`` and ``accounts`` rows of the same
id are merged first (later non-null values win), so each id is upserted once per batch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from server.rules import integrations_allow
from server.warehouse.schema import plan_table
from server.warehouse.transform import UPSERT_TABLES, rows_for_event

Notice = Callable[[str], None]


def merge_latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per id: for each column the latest non-null value (rows are in arrival order)."""
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        current = merged.get(row["id"])
        if current is None:
            merged[row["id"]] = dict(row)
            continue
        newer = row["received_at"] >= current["received_at"]
        for column, value in row.items():
            if value is not None and (newer or current.get(column) is None):
                current[column] = value
    return list(merged.values())


def rows_by_table(
    logged: list[dict[str, Any]], names: Iterable[str], notice: Notice
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Group the rows of the wanted events by table; also return how many events were wanted."""
    names = tuple(names)
    tables: dict[str, list[dict[str, Any]]] = {}
    used = 0
    for item in logged:
        event = item["event"]
        if not integrations_allow(event, names):  # Segment's rule, shared (server/rules.py)
            continue
        used += 1
        for table, row in rows_for_event(event, item["received_at"], notice):
            tables.setdefault(table, []).append(row)
    return tables, used


def load_tables(
    target, tables: dict[str, list[dict[str, Any]]], column_limit: int, notice: Notice
) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """Load every table (one transaction each); return rows inserted and the column types."""
    existing = target.existing_columns()
    loaded_at = datetime.now(timezone.utc)
    counts: dict[str, int] = {}
    columns: dict[str, dict[str, str]] = {}
    for table, rows in tables.items():
        if table in UPSERT_TABLES:
            rows = merge_latest(rows)
        for row in rows:
            row["uuid_ts"] = loaded_at
        plan = plan_table(table, rows, existing.get(table), column_limit, notice, target.max_row_bytes)
        counts[table] = target.load(plan, upsert=table in UPSERT_TABLES)
        columns[table] = plan.types
    return counts, columns

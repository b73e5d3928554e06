"""One batch of logged events → rows per table → one load (one transaction per table).

Events a caller switched off for this destination (``integrations: {"Warehouse": false}``, or
``All: false`` without naming it) are left out. ``users`` and ``accounts`` rows of the same
id are merged first (later non-null values win), so each id is upserted once per batch.

Every row remembers the event it came from, so that when the warehouse refuses a table's rows
because of the data, the events to blame can be found and skipped and the rest loaded
(isolation.py); an event whose rows cannot even be built is skipped here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from server.rules import integrations_allow
from server.store.warehouse_skipped import Skipped
from server.warehouse.data_errors import describe, is_data_error
from server.warehouse.isolation import load_isolating
from server.warehouse.schema import plan_table
from server.warehouse.transform import UPSERT_TABLES, rows_for_event

Notice = Callable[[str], None]


@dataclass
class Batch:
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    origins: dict[str, list[int]] = field(default_factory=dict)  # per table: each row's event (log id)
    message_ids: dict[int, str] = field(default_factory=dict)    # log id → messageId
    skipped: list[Skipped] = field(default_factory=list)
    used: int = 0                                                # events wanted by this destination


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


def _message_id(event: dict[str, Any]) -> str:
    return str(event.get("messageId") or "")[:100]


def rows_by_table(logged: list[dict[str, Any]], names: Iterable[str], notice: Notice) -> Batch:
    """Group the rows of the wanted events by table."""
    names = tuple(names)
    batch = Batch()
    tables, origins = batch.tables, batch.origins
    for item in logged:
        event = item["event"]
        if not integrations_allow(event, names):  # Segment's rule, shared (server/rules.py)
            continue
        batch.used += 1
        event_id = item.get("id", 0)
        try:
            produced = rows_for_event(event, item["received_at"], notice)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            batch.skipped.append(Skipped(event_id, _message_id(event), "", describe(exc)))
            continue
        for table, row in produced:
            tables.setdefault(table, []).append(row)
            origins.setdefault(table, []).append(event_id)
        batch.message_ids[event_id] = _message_id(event)
    return batch


def load_tables(
    target, batch: Batch, column_limit: int, notice: Notice
) -> tuple[dict[str, int], dict[str, dict[str, str]], list[Skipped]]:
    """Load every table (one transaction each); return rows inserted, the column types, and
    the events whose rows a table refused (skipped: everything else is loaded)."""
    existing = target.existing_columns()
    loaded_at = datetime.now(timezone.utc)
    counts: dict[str, int] = {}
    columns: dict[str, dict[str, str]] = {}
    skipped: list[Skipped] = []
    for table, rows in batch.tables.items():
        upsert = table in UPSERT_TABLES
        for row in rows:
            row["uuid_ts"] = loaded_at

        def load(indices: list[int], table=table, rows=rows, upsert=upsert) -> tuple[int, dict[str, str]]:
            part = rows if len(indices) == len(rows) else [rows[i] for i in indices]
            if upsert:
                part = merge_latest(part)
            plan = plan_table(table, part, existing.get(table), column_limit, notice, target.max_row_bytes)
            count = target.load(plan, upsert=upsert)
            existing[table] = plan.types  # the table exists now, with these columns
            return count, plan.types

        def reread(table=table) -> None:
            # The catalog was read at the start of the batch; someone may have altered or
            # dropped the table since. The next attempts plan against what is there now.
            now = target.existing_columns().get(table)
            if now is None:
                existing.pop(table, None)
            else:
                existing[table] = now

        count, types, refused = load_isolating(load, len(rows), reread)
        counts[table] = count
        if types:
            columns[table] = types
        for index, exc in refused:
            event_id = batch.origins[table][index]
            skipped.append(Skipped(event_id, batch.message_ids.get(event_id, ""), table, describe(exc)))
    return counts, columns, skipped

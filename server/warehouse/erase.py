"""Erasing users from the warehouses (a delete regulation's last step).

For every warehouse destination (of the regulation's sources), under the loader's own lock (so
no load runs meanwhile and none can bring the rows back: the events are already gone from the
log when this runs), every table the loader wrote is cleaned: rows whose ``user_id`` is one of
the users (tracks, identifies, pages, screens, groups, aliases and every per-event table), and
the users' rows of ``users`` (keyed on ``id`` = userId). ``accounts`` holds group traits keyed
on the group id, not a user's data, and is left alone.

Deletes go ``BATCH`` rows at a time (by rowid on SQLite, ctid on PostgreSQL), so a user with
millions of rows never holds one huge transaction on the warehouse.
"""

from __future__ import annotations



from sqlalchemy import Engine

from server.catalog import Catalog
from server.config import Config
from server.store import workspace
from server.warehouse.loader import PostgresTarget, SqliteTarget
from server.warehouse.naming import quote
from server.warehouse.sync import SLUG, open_target, redact, settings_of

BATCH = 5000
USERS_PER_STATEMENT = 200


def _delete(target: SqliteTarget | PostgresTarget, table: str, column: str, user_ids: list[str]) -> int:
    total = 0
    for start in range(0, len(user_ids), USERS_PER_STATEMENT):
        chunk = user_ids[start:start + USERS_PER_STATEMENT]
        while True:
            if isinstance(target, SqliteTarget):
                marks = ", ".join("?" for _ in chunk)
                name = quote(table)
                deleted = target.conn.execute(
                    f"DELETE FROM {name} WHERE rowid IN (SELECT rowid FROM {name} WHERE {quote(column)} IN ({marks}) "
                    f"LIMIT {BATCH})", chunk).rowcount
            else:
                name = f"{quote(target.schema)}.{quote(table)}"
                deleted = target.conn.execute(
                    f"DELETE FROM {name} WHERE ctid IN (SELECT ctid FROM {name} WHERE {quote(column)} = ANY(%s) "
                    f"LIMIT {BATCH})", (chunk,)).rowcount
            total += max(deleted, 0)
            if deleted < BATCH:
                break
    return total


def erase_users(engine: Engine, catalog: Catalog, config: Config, user_ids: list[str],
                source_ids: list[int] | None) -> dict[str, int]:
    """Delete the users' rows from every warehouse; {"warehouse.<table>": rows deleted} summed
    over the warehouses. Raises if a warehouse cannot be reached (the regulation then fails and
    says so: its data is still there)."""
    counts: dict[str, int] = {}
    for destination in workspace.list_destinations(engine):
        if destination["slug"] != SLUG or (source_ids and destination["source_id"] not in source_ids):
            continue
        source = workspace.get_source(engine, destination["source_id"])
        settings = settings_of(catalog, destination)
        try:
            target = open_target(config, destination, source, settings)
        except Exception as exc:
            raise RuntimeError(redact(f"cannot open warehouse {destination['id']}: {exc}", settings)) from None
        try:
            with target.lock(True):
                for table, columns in sorted(target.existing_columns().items()):
                    column = "id" if table == "users" else "user_id" if "user_id" in columns else None
                    if column is None or column not in columns:
                        continue
                    deleted = _delete(target, table, column, user_ids)
                    counts[f"warehouse.{table}"] = counts.get(f"warehouse.{table}", 0) + deleted
        except Exception as exc:
            raise RuntimeError(redact(f"warehouse {destination['id']}: {type(exc).__name__}: {exc}", settings)) from None
        finally:
            target.close()
    return counts



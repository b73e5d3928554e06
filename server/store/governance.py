"""The governance log: one row per governance action (regulation, retention run, replay,
filter change), with who did it and what it touched.

Anyone may ``record`` an entry, inside their own transaction (pass the Connection, so the entry
commits or rolls back with the action) or on its own (pass the Engine). Entries are never
updated or deleted by Switchboard: they are the record that an erasure happened, so they hold
counts and ids, never the erased data itself (a regulation's user ids stay in ``regulations``).

Each entry is also the audit log's entry for that change (``server/store/audit.py``): ``record``
writes both in one transaction, so the audit is the single record of every change and this log
its governance view with counts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, Connection, Engine, Index, String, Table, select

from server.store import audit
from server.store.engine import read_only
from server.store.schema import Id, UTCDateTime, metadata

governance_log = Table(
    "governance_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(60), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("details", JSON, nullable=True),
    Column("counts", JSON, nullable=True),
    sqlite_autoincrement=True,
)
Index("ix_governance_log_action_id", governance_log.c.action, governance_log.c.id)


def create_tables(conn: Connection) -> None:
    governance_log.create(conn, checkfirst=True)


def record(
    conn_or_engine: Connection | Engine,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict | None = None,
    counts: dict | None = None,
) -> int:
    """Append one entry; return its id. With a Connection the entry joins its transaction."""
    values = {
        "at": datetime.now(timezone.utc),
        "actor": actor[:200],
        "action": action[:60],
        "subject": subject[:300],
        "details": details,
        "counts": counts,
    }
    if isinstance(conn_or_engine, Connection):
        return _write(conn_or_engine, values)
    with conn_or_engine.begin() as conn:
        return _write(conn, values)


def _write(conn: Connection, values: dict) -> int:
    entry_id = int(conn.execute(governance_log.insert().values(**values)).inserted_primary_key[0])
    changes = {**(values["details"] or {}), **({"counts": values["counts"]} if values["counts"] else {})}
    audit.record(conn, actor=values["actor"], action=values["action"], subject=values["subject"],
                 changes={**changes, "governance_id": entry_id})
    return entry_id


def _row(row: Any) -> dict:
    return {
        "id": row.id,
        "at": row.at.isoformat().replace("+00:00", "Z"),
        "actor": row.actor,
        "action": row.action,
        "subject": row.subject,
        "details": row.details or {},
        "counts": row.counts or {},
    }


def list_entries(engine: Engine, *, action: str | None = None, limit: int = 100, before_id: int | None = None) -> list[dict]:
    """Newest first; ``before_id`` pages back (pass the last id of the previous page)."""
    query = select(governance_log).order_by(governance_log.c.id.desc()).limit(max(1, min(limit, 1000)))
    if action:
        query = query.where(governance_log.c.action == action)
    if before_id is not None:
        query = query.where(governance_log.c.id < before_id)
    with read_only(engine) as conn:
        return [_row(row) for row in conn.execute(query)]

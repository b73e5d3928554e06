"""The audit log: who changed what, when, and from where — one row per change.

Why one log, and where it is written
    Every change is recorded in the store, next to the write it describes and in the same
    transaction, so the API, the web app and the CLI (which all write through the store) cannot
    forget it and a rolled-back change leaves no entry:

    - sources, destinations, settings, filters, rollbacks and key rotations: ``workspace._bump``
      (the one function every workspace change already calls to make a settings version);
    - regulations, retention runs, replays and filter changes: ``governance.record``, which
      writes its governance entry **and** the audit entry for it. The audit log is the single
      record of changes; the governance log stays as the privacy page's record of erasures (with
      counts), written by the same call, so the two cannot disagree. Filter changes are recorded
      there (with the new filter list) and not again by ``workspace``;
    - sign-ins, tokens and users: ``record`` called by the plane that does them (one call each).

    "From where" is the ``origin`` contextvar: the app's one middleware sets the client address
    and user agent for each request (``server.app``), the CLI sets ``"cli"``; a background run
    that sets nothing is recorded as ``"system"``.

Nothing secret
    Viewers may read the audit, so ``changes`` never holds a secret: a setting's value is kept
    only when its destination's manifest marks it public (``"secret": false``); any other
    setting (secret, or unknown to the catalog) is shown as the mask, and only *that* it changed
    is kept. Write keys and tokens are never recorded.

Retention: ``prune`` deletes entries older than SWITCHBOARD_AUDIT_RETENTION_DAYS, called by the
privacy plane's retention run (``server/privacy/runner.py``).
"""

from __future__ import annotations

import contextvars
import functools
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, Connection, Engine, Index, String, Table, select

from server.catalog import SECRET_MASK, load_catalog
from server.store.engine import read_only
from server.store.schema import Id, UTCDateTime, metadata

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(60), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("changes", JSON, nullable=True),
    Column("address", String(100), nullable=True),
    Column("user_agent", String(300), nullable=True),
    sqlite_autoincrement=True,
)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_audit_log_actor_id", audit_log.c.actor, audit_log.c.id)

# {"address": ..., "user_agent": ...} for a web/API request; {"user_agent": "cli"} in the CLI.
origin: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("audit_origin", default=None)

CLI = {"address": None, "user_agent": "cli"}


def create_tables(conn: Connection) -> None:
    audit_log.create(conn, checkfirst=True)


@functools.lru_cache(maxsize=1)
def _public_keys() -> dict[str, frozenset[str]]:
    return {m.slug: frozenset(s.key for s in m.settings if not s.secret) for m in load_catalog()}


def mask_setting(slug: str, key: str, value: Any) -> Any:
    """A setting's value as the audit may show it: public ones as they are, the rest masked."""
    if value is None or value == "" or key in _public_keys().get(slug, frozenset()):
        return value
    return SECRET_MASK


def record(
    conn_or_engine: Connection | Engine,
    *,
    actor: str,
    action: str,
    subject: str,
    changes: dict | None = None,
    origin: dict | None = None,
) -> int:
    """Append one entry; return its id. With a Connection the entry joins its transaction.

    ``changes``: {field: {"before": …, "after": …}} or any JSON detail, already free of secrets.
    ``origin``: {"address", "user_agent"}; by default the current request's (or the CLI's)."""
    where = origin if origin is not None else (_origin_now() or {})
    values = {
        "at": datetime.now(timezone.utc),
        "actor": actor[:200],
        "action": action[:60],
        "subject": subject[:300],
        "changes": changes or None,
        "address": (where.get("address") or None) and str(where["address"])[:100],
        "user_agent": (where.get("user_agent") or None) and str(where["user_agent"])[:300],
    }
    if isinstance(conn_or_engine, Connection):
        return int(conn_or_engine.execute(audit_log.insert().values(**values)).inserted_primary_key[0])
    with conn_or_engine.begin() as conn:
        return int(conn.execute(audit_log.insert().values(**values)).inserted_primary_key[0])


def _origin_now() -> dict | None:
    return origin.get()


def _row(row: Any) -> dict:
    return {
        "id": row.id,
        "at": row.at.isoformat().replace("+00:00", "Z"),
        "actor": row.actor,
        "action": row.action,
        "subject": row.subject,
        "changes": row.changes or {},
        "origin": {"address": row.address, "user_agent": row.user_agent or "system"},
    }


def list_entries(
    engine: Engine, *, actor: str | None = None, action: str | None = None, subject: str | None = None,
    since: datetime | None = None, until: datetime | None = None, before_id: int | None = None, limit: int = 100,
) -> list[dict]:
    """Newest first. ``action`` matches exactly or as a prefix ("destination" finds
    "destination.update"); ``subject`` likewise ("destination" finds "destination:4").
    ``before_id`` pages back: pass the last id of the previous page."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(limit, 500)))
    if actor:
        query = query.where(audit_log.c.actor == actor)
    if action:
        query = query.where((audit_log.c.action == action) | audit_log.c.action.startswith(action + ".", autoescape=True))
    if subject:
        query = query.where((audit_log.c.subject == subject) | audit_log.c.subject.startswith(subject + ":", autoescape=True))
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if until is not None:
        query = query.where(audit_log.c.at < until)
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    with read_only(engine) as conn:
        return [_row(row) for row in conn.execute(query)]


def prune(engine: Engine, older_than: datetime) -> int:
    """Delete entries recorded before ``older_than``; how many went."""
    with engine.begin() as conn:
        return int(conn.execute(audit_log.delete().where(audit_log.c.at < older_than)).rowcount or 0)

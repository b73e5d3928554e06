"""Versioned schema migrations, recorded in ``schema_migrations``.

Migration 1 creates every table declared on ``schema.metadata`` (the planes' table modules are
imported first so that their tables are declared). Later migrations are appended to
``MIGRATIONS`` as (number, description, function(conn)) and run once each, in order, in one
transaction apiece. ``migrate`` is safe to call on every start and from several processes: on
PostgreSQL an advisory lock serialises them; on SQLite ``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, insert, inspect, select, text

from server.store import schema

schema_migrations = Table(
    "schema_migrations",
    schema.metadata,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied_at", schema.UTCDateTime(), nullable=False),
)

_MIGRATION_LOCK_ID = 0x5B0A_0001


def _import_table_modules() -> None:
    """Import every module of server.store so that each declares its tables."""
    import server.store as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"server.store.{info.name}")


def _create_all(conn: Connection) -> None:
    schema.metadata.create_all(conn, checkfirst=True)


def _create_web_sessions(conn: Connection) -> None:
    # Server-side web sessions, so that signing out ends a session. A database that ran
    # migration 1 before this table existed gets it here (with its index); on a new database
    # migration 1 already created it and this does nothing.
    schema.metadata.tables["web_sessions"].create(conn, checkfirst=True)


def _create_heartbeats(conn: Connection) -> None:
    from server.store.workers import create_heartbeats

    create_heartbeats(conn)


def _create_ingest_health(conn: Connection) -> None:
    # Refused-event records and counts (server/store/rejections.py) and the readiness probe's
    # row (server/store/probe.py); on a new database migration 1 already created them.
    for name in ("rejected_events", "rejected_event_counts", "store_probe"):
        schema.metadata.tables[name].create(conn, checkfirst=True)


def _create_bundle_builds(conn: Connection) -> None:
    # Persisted bundle builds and the settings change sequence (server/store/bundle_builds.py).
    from server.store import bundle_builds

    bundle_builds.create_tables(conn)


def _create_governance(conn: Connection) -> None:
    # The governance log, regulations and the suppression list (issue #16).
    from server.store import governance, regulations

    governance.create_tables(conn)
    regulations.create_tables(conn)


def _add_source_library_name(conn: Connection) -> None:
    # sources.library_name (server/api/library_name.py). A database created after the column was
    # declared already has it from migration 1.
    if "library_name" not in {c["name"] for c in inspect(conn).get_columns("sources")}:
        conn.execute(text("ALTER TABLE sources ADD COLUMN library_name VARCHAR(40)"))


def _create_filters_and_replays(conn: Connection) -> None:
    # destinations.filters, delivery_jobs.replay_id and the replays table (server/store/replays.py).
    from server.store import replays

    replays.migrate(conn)


def _add_roles(conn: Connection) -> None:
    # web_admin_users.role and admin_tokens.role (issue #17). The existing admin account and every
    # existing token become owners, which is what they could do before: everything.
    for table in ("web_admin_users", "admin_tokens"):
        if "role" not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN role VARCHAR(20) NOT NULL DEFAULT 'owner'"))


def _create_audit_log(conn: Connection) -> None:
    # The audit log (server/store/audit.py).
    from server.store import audit

    audit.create_tables(conn)


def _create_alerts(conn: Connection) -> None:
    # Alert rules and their history (server/store/alerts.py, docs/alerts.md).
    from server.store import alerts

    alerts.create_tables(conn)


def _delivery_jobs_fillfactor(conn: Connection) -> None:
    # PostgreSQL: leave a third of each delivery_jobs page free, so that a claim's lease (which
    # changes no indexed column) is a HOT update: the new row version goes in the same page and
    # none of the table's six indexes gets an entry. On full pages every lease wrote six index
    # entries, and claims were most of the database's time while delivering
    # (pg_stat_statements, bench/deliver.py; docs/delivery.md). New pages only: a busy table
    # turns over quickly. SQLite has no such setting.
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE delivery_jobs SET (fillfactor = 70)"))


def _create_warehouse_skipped(conn: Connection) -> None:
    # Events a warehouse refused, skipped so that the rest loads (server/store/warehouse_skipped.py),
    # and how many each sync skipped. A database created after both were declared has them.
    from server.store import warehouse_skipped

    warehouse_skipped.create_tables(conn)
    if "skipped" not in {c["name"] for c in inspect(conn).get_columns("warehouse_syncs")}:
        conn.execute(text("ALTER TABLE warehouse_syncs ADD COLUMN skipped BIGINT NOT NULL DEFAULT 0"))


def _add_source_server_cookies(conn: Connection) -> None:
    # sources.server_cookies (server/ingest/kept_cookies.py). A database created after the column
    # was declared already has it from migration 1.
    if "server_cookies" not in {c["name"] for c in inspect(conn).get_columns("sources")}:
        false = "false" if conn.dialect.name == "postgresql" else "0"
        conn.execute(text(f"ALTER TABLE sources ADD COLUMN server_cookies BOOLEAN NOT NULL DEFAULT {false}"))


def _key_suppressions_by_digest(conn: Connection) -> None:
    # suppressions keyed by the userId's SHA-256 instead of the id in a VARCHAR(400), so that a
    # regulation can name any userId an event carries (server/store/regulations.py). The table
    # is small (one row per suppressed user and scope): it is rebuilt with its rows. A database
    # created after the new definition already has it from migration 1 or 7.
    from server.store import regulations

    if "user_key" in {c["name"] for c in inspect(conn).get_columns("suppressions")}:
        return
    old = Table("suppressions", MetaData(), Column("user_id", String(400)), Column("source_id", schema.Id),
                Column("regulation_id", schema.Id), Column("created_at", schema.UTCDateTime()))
    rows = [r._asdict() for r in conn.execute(select(old))]
    old.drop(conn)
    regulations.suppressions.create(conn)
    if rows:
        conn.execute(insert(regulations.suppressions), [{**r, "user_key": regulations.user_key(r["user_id"])} for r in rows])


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "create tables", _create_all),
    (2, "create web_sessions", _create_web_sessions),
    (3, "create delivery_workers (heartbeats) and delivery_jobs.takeovers", _create_heartbeats),
    (4, "create rejected_events, rejected_event_counts, store_probe", _create_ingest_health),
    (5, "create bundle_builds and settings_sequence", _create_bundle_builds),
    (6, "add sources.library_name", _add_source_library_name),
    (7, "create governance_log, regulations, suppressions", _create_governance),
    (8, "add destinations.filters, delivery_jobs.replay_id; create replays", _create_filters_and_replays),
    (9, "add web_admin_users.role and admin_tokens.role", _add_roles),
    (10, "create audit_log", _create_audit_log),
    (11, "create alert_rules, alert_events", _create_alerts),
    (12, "delivery_jobs fillfactor 70 on PostgreSQL (HOT lease updates)", _delivery_jobs_fillfactor),
    (13, "create warehouse_skipped; add warehouse_syncs.skipped", _create_warehouse_skipped),
    (14, "suppressions keyed by a digest of the userId (ids of any length)", _key_suppressions_by_digest),
    (15, "add sources.server_cookies", _add_source_server_cookies),
]


def migrate(engine: Engine) -> list[int]:
    """Bring the database to the newest schema; return the migration numbers applied now."""
    _import_table_modules()
    applied_now: list[int] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
        schema_migrations.create(conn, checkfirst=True)
        done = set(conn.execute(select(schema_migrations.c.version)).scalars())
        for number, description, apply in MIGRATIONS:
            if number in done:
                continue
            apply(conn)
            conn.execute(
                schema_migrations.insert().values(
                    version=number, description=description, applied_at=datetime.now(timezone.utc)
                )
            )
            applied_now.append(number)
        # Tables added by a plane after migration 1 ran on this database (development only:
        # released schema changes get a numbered migration).
        _create_all(conn)
    return applied_now

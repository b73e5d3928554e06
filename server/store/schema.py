"""Tables of the workspace: sources, their destinations, settings history, admin tokens.

Planes that need tables of their own (events, delivery, warehouse syncs, web sessions) declare
them on this same ``metadata`` in their own module under ``server/store/``; the migration runner
creates whatever is declared.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """A timestamp that always comes back timezone-aware in UTC (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# Stable constraint names, so later migrations can refer to them on both databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger ids that are still SQLite's rowid alias (INTEGER PRIMARY KEY) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

sources = Table(
    "sources",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("slug", String(200), nullable=False),
    Column("write_key", String(64), nullable=False, unique=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("settings_version", Integer, nullable=False, default=1),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # context.library.name in this source's bundle; NULL = "switchboard.js" (server/api/library_name.py).
    Column("library_name", String(40), nullable=True),
    # The bundle asks the collector to set the visitor's id cookies again, once a day (server-set
    # cookies outlive Safari's 7-day cap on cookies written by scripts): docs/bundle.md. Migration 15.
    Column("server_cookies", Boolean, nullable=False, default=False, server_default=false()),
    # AUTOINCREMENT: SQLite would otherwise hand a deleted row's id to the next insert, and ids
    # are remembered elsewhere (URLs, settings snapshots that a rollback brings back).
    sqlite_autoincrement=True,
)

destinations = Table(
    "destinations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("slug", String(100), nullable=False),
    Column("mode", String(10), nullable=False),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("settings", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Destination filters (docs/filters.md), an ordered list; NULL is none. Migration 8.
    Column("filters", JSON, nullable=True),
    # A rollback re-inserts deleted destinations with their old ids: those must never be reused.
    sqlite_autoincrement=True,
)

# An immutable snapshot of a source and all its destinations after each change. The row whose
# version equals sources.settings_version is the current configuration: bundle misses read it
# through the (source_id, version) unique index in one query.
settings_versions = Table(
    "settings_versions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("summary", Text, nullable=False),
    Column("content", JSON, nullable=False),
    UniqueConstraint("source_id", "version", name="uq_settings_versions_source_version"),
)

admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=True),
    # owner | editor | viewer (server/api/auth.py); tokens made before roles existed are owners.
    Column("role", String(20), nullable=False, server_default="owner"),
)

# Small key/value facts about this installation (generated session secret, …).
app_state = Table(
    "app_state",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

Index("ix_destinations_source_slug", destinations.c.source_id, destinations.c.slug)

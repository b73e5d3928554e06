"""Shared pieces of the warehouse tests (no tests here): a store with one source and a
warehouse destination on a real SQLite file or a real PostgreSQL database, events written
into the durable log exactly as the collector stores them, and SQL against the target."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from server.catalog import load_catalog
from server.config import Config
from server.store import notify, open_store, workspace
from server.store.events import events as events_table
from server.store.events import rows_for
from server.warehouse.sync import sync_destination

SOURCE_NAME = "My Shop"
SCHEMA = "my_shop"


def make_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A normalised Segment event like the collector stores (messageId, timestamps, context)."""
    event = {
        "type": kind,
        "messageId": f"msg-{uuid.uuid4()}",
        "anonymousId": "anon-1",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "originalTimestamp": "2024-05-01T12:00:00.000Z",
        "sentAt": "2024-05-01T12:00:01.000Z",
        "receivedAt": "2024-05-01T12:00:02.000Z",
        "context": {"library": {"name": "analytics.js", "version": "5.0.0"}, "ip": "203.0.113.9"},
        "integrations": {},
    }
    event.update(fields)
    return event


@dataclass
class Warehouse:
    """A source with an enabled warehouse destination, and its target database."""

    kind: str                      # "sqlite" or "postgres"
    engine: Any
    config: Config
    source: dict
    destination: dict
    target_url: str = ""
    sqlite_path: Path | None = None
    catalog: Any = field(default_factory=load_catalog)

    def emit(self, *items: dict[str, Any], received_at: datetime | None = None) -> None:
        rows = rows_for(self.source["id"], received_at or datetime.now(timezone.utc), items)
        with self.engine.begin() as conn:
            conn.execute(events_table.insert(), rows)
        notify.EVENTS.committed(0)  # as every append does: the scheduler sleeps until told

    def sync(self, **kw) -> dict:
        return sync_destination(self.engine, self.catalog, self.config, self.destination["id"], **kw)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run SQL on the target (PostgreSQL: inside the source's schema)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.sqlite_path) as db:
                return db.execute(sql.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(self.target_url.replace("+psycopg", "")) as db:
            db.execute(f"SET search_path TO {SCHEMA}")
            return db.execute(sql, params).fetchall()

    def execute(self, sql: str) -> None:
        """Run one statement that returns no rows on the target (DDL: a constraint, a trigger),
        committed; on PostgreSQL inside the source's schema, created if need be."""
        if self.kind == "sqlite":
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(self.sqlite_path) as db:
                db.execute(sql)
            return
        import psycopg

        with psycopg.connect(self.target_url.replace("+psycopg", ""), autocommit=True) as db:
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            db.execute(f"SET search_path TO {SCHEMA}")
            db.execute(sql)

    def columns(self, table: str) -> list[str]:
        if self.kind == "sqlite":
            return [r[1] for r in self.query(f'PRAGMA table_info("{table}")')]
        return [r[0] for r in self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position", (SCHEMA, table))]

    def tables(self) -> set[str]:
        if self.kind == "sqlite":
            if not self.sqlite_path.exists():
                return set()
            return {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {r[0] for r in self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (SCHEMA,))}

    def count(self, table: str) -> int:
        return self.query(f'SELECT count(*) FROM "{table}"')[0][0]


def build_warehouse(kind: str, tmp_path: Path, pg=None, **settings: Any) -> Warehouse:
    if kind == "sqlite":
        store_url = f"sqlite:///{tmp_path / 'switchboard.db'}"
        sqlite_path = tmp_path / "warehouse" / "shop.db"
        settings = {"target": "sqlite", "sqlite_path": str(sqlite_path), **settings}
        target_url = ""
    else:
        store_url = pg.create_database()
        target_url = pg.create_database()
        sqlite_path = None
        settings = {"target": "postgresql", "database_url": target_url, **settings}
    engine = open_store(store_url)
    source = workspace.create_source(engine, SOURCE_NAME)
    destination = workspace.add_destination(
        engine, source["id"], slug="warehouse", mode="cloud", enabled=True, settings=settings
    )
    return Warehouse(kind, engine, Config(database_url=store_url, delivery_workers=False, allow_private_egress=True), source, destination,
                     target_url=target_url, sqlite_path=sqlite_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def wh(request, tmp_path) -> Warehouse:
    pg = request.getfixturevalue("pg") if request.param == "postgres" else None
    warehouse = build_warehouse(request.param, tmp_path, pg)
    yield warehouse
    warehouse.engine.dispose()


def as_utc_text(value: Any) -> str:
    """A timestamp from either target as 'YYYY-MM-DDTHH:MM:SS.mmmZ'."""
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value

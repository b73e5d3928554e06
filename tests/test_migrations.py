"""Versioned migrations: recorded in schema_migrations, idempotent, on both databases."""

from __future__ import annotations

from sqlalchemy import inspect, select

from server.store import migrations
from server.store.engine import make_engine
from server.store.schema import metadata


def test_migrations_are_recorded_and_run_once(db_url):
    engine = make_engine(db_url)
    try:
        first = migrations.migrate(engine)
        assert first == [number for number, _, _ in migrations.MIGRATIONS]
        assert migrations.migrate(engine) == []  # nothing left to apply

        with engine.connect() as conn:
            rows = conn.execute(select(migrations.schema_migrations).order_by(
                migrations.schema_migrations.c.version)).all()
        assert [(r.version, r.description) for r in rows] == [(n, d) for n, d, _ in migrations.MIGRATIONS]
        assert all(r.applied_at.tzinfo is not None for r in rows)

        tables = set(inspect(engine).get_table_names())
        assert {"sources", "destinations", "settings_versions", "admin_tokens", "app_state",
                "schema_migrations"} <= tables
        assert set(metadata.tables) <= tables  # every table any store module declares
    finally:
        engine.dispose()


def test_migrating_keeps_existing_data(sqlite_url):
    from server.store import open_store, workspace

    engine = open_store(sqlite_url)
    source = workspace.create_source(engine, "Kept")
    engine.dispose()
    engine = open_store(sqlite_url)  # a restart migrates again
    try:
        assert workspace.get_source(engine, source["id"])["write_key"] == source["write_key"]
    finally:
        engine.dispose()


def test_a_database_from_before_web_sessions_gets_the_table(db_url):
    # What the previous release left behind: migration 1 done, every table but web_sessions.
    from server.store import open_store, workspace

    migrations._import_table_modules()
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn, tables=[t for t in metadata.sorted_tables if t.name != "web_sessions"])
            conn.execute(migrations.schema_migrations.insert().values(
                version=1, description="create tables", applied_at=workspace.now()))
        source = workspace.create_source(engine, "Kept")
        assert "web_sessions" not in inspect(engine).get_table_names()

        assert migrations.migrate(engine) == [n for n, _, _ in migrations.MIGRATIONS if n > 1]
        assert "web_sessions" in inspect(engine).get_table_names()
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("web_sessions")}
        assert "ix_web_sessions_expires_at" in indexes
    finally:
        engine.dispose()
    engine = open_store(db_url)  # and the server starts on it as usual
    try:
        assert workspace.get_source(engine, source["id"])["write_key"] == source["write_key"]
        assert migrations.migrate(engine) == []
    finally:
        engine.dispose()


def test_delivery_jobs_leave_room_for_lease_updates_on_postgres(db_url):
    """Migration 12: on PostgreSQL delivery_jobs pages keep 30 % free, so that a claim's lease is
    a HOT update (no index entries); SQLite has no such setting and is left as it was."""
    from sqlalchemy import text

    engine = make_engine(db_url)
    try:
        migrations.migrate(engine)
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'delivery_jobs'")).scalar()
                assert options == ["fillfactor=70"]
            else:
                assert "delivery_jobs" in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_a_suppression_list_keyed_by_the_id_is_rebuilt_keyed_by_its_digest(db_url):
    """Migration 14: the suppression list of the previous release (the userId in a VARCHAR(400) as
    the key) becomes one keyed by the id's SHA-256, with every row kept and found."""
    from datetime import datetime, timezone

    from sqlalchemy import Column, MetaData, String, Table

    from server.store import regulations, schema
    from server.store.suppression_lookup import suppression_of

    migrations._import_table_modules()
    engine = make_engine(db_url)
    old = Table("suppressions", MetaData(), Column("user_id", String(400), primary_key=True),
                Column("source_id", schema.Id, primary_key=True), Column("regulation_id", schema.Id, nullable=False),
                Column("created_at", schema.UTCDateTime(), nullable=False))
    now = datetime.now(timezone.utc)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn, tables=[t for t in metadata.sorted_tables if t.name != "suppressions"])
            old.create(conn)
            conn.execute(old.insert(), [{"user_id": "ada", "source_id": 0, "regulation_id": 1, "created_at": now},
                                        {"user_id": "bob", "source_id": 5, "regulation_id": 2, "created_at": now}])
            conn.execute(migrations.schema_migrations.insert(), [
                {"version": n, "description": d, "applied_at": now} for n, d, _ in migrations.MIGRATIONS if n < 14])
        assert migrations.migrate(engine) == [n for n, _, _ in migrations.MIGRATIONS if n >= 14]
        assert {"user_key", "user_id"} <= {c["name"] for c in inspect(engine).get_columns("suppressions")}
        assert regulations.read_suppressions(engine)[1] == {("ada", 0), ("bob", 5)}
        assert suppression_of(engine, "ada", 9)["regulation_id"] == 1  # every source
        assert suppression_of(engine, "bob", 5)["regulation_id"] == 2 and suppression_of(engine, "bob", 6) is None
        assert migrations.migrate(engine) == []
    finally:
        engine.dispose()


def test_migration_15_adds_server_cookies_off_to_existing_sources(db_url):
    from sqlalchemy import text

    from server.store import workspace

    migrations._import_table_modules()
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:  # what the previous release left: no sources.server_cookies
            metadata.create_all(conn)
            conn.execute(text("ALTER TABLE sources DROP COLUMN server_cookies"))
            conn.execute(migrations.schema_migrations.insert(), [
                {"version": n, "description": d, "applied_at": workspace.now()} for n, d, _ in migrations.MIGRATIONS if n < 15])
            conn.execute(text("INSERT INTO sources (name, slug, write_key, enabled, settings_version, created_at, "
                              "updated_at) VALUES ('Old', 'old', 'wk_old', true, 1, '2026-01-01', '2026-01-01')"))
        assert migrations.migrate(engine) == [15]
        assert workspace.source_by_write_key(engine, "wk_old")["server_cookies"] is False
        assert migrations.migrate(engine) == []
    finally:
        engine.dispose()

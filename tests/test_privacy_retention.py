"""Retention prunes only what is old and done with, on SQLite and PostgreSQL: an old event goes
once its jobs are delivered; one with a job still queued or retrying, or kept as a dead letter,
stays; so does one the fan-out or a warehouse has not read yet. Old dead letters go by their own
setting (and then their events). Each run is in the governance log; disk use is in /metrics."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from starlette.testclient import TestClient

from delivery_vendor import make_event
from server.app import create_app
from server.config import Config
from server.privacy.runner import run_retention
from server.store import delivery as delivery_store
from server.store import events as events_store
from server.store import governance, warehouse, workspace
from server.store.engine import read_only


def test_retention_prunes_only_old_and_delivered(db_url, engine, catalog, admin_token):
    source = workspace.create_source(engine, "Site")
    lake = workspace.create_source(engine, "Lake")
    hook = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                     settings={"url": "http://127.0.0.1:9/in"})
    wh = workspace.add_destination(engine, lake["id"], slug="warehouse", mode="cloud", enabled=True,
                                   settings={"target": "sqlite"})
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(days=40), now - timedelta(days=2)

    def store(source_id: int, name: str, at: datetime) -> int:
        row = events_store.rows_for(source_id, at, [make_event("track", event=name, messageId=name)])
        assert events_store.append(engine, row, dedupe_window=86400) == [True]
        with read_only(engine) as conn:
            return conn.execute(select(events_store.events.c.id).where(events_store.events.c.message_id == name)).scalar_one()

    ids = {name: store(source["id"], name, at) for name, at in [
        ("old-delivered", old), ("old-queued", old), ("old-retrying", old), ("old-dead-recent", old),
        ("old-dead-old", old), ("old-skipped", old), ("recent-delivered", recent)]}
    ids["lake-old-loaded"] = store(lake["id"], "lake-old-loaded", old)
    ids["lake-old-unloaded"] = store(lake["id"], "lake-old-unloaded", old)
    ids["old-not-fanned-out"] = store(source["id"], "old-not-fanned-out", old)
    jobs = delivery_store.delivery_jobs
    with engine.begin() as conn:
        delivery_store.queue_jobs(conn, [(hook["id"], ids[n]) for n in ids if not n.startswith(("lake", "old-not"))], now)
        for name, status, finished in [("old-delivered", "delivered", old), ("old-retrying", "retrying", None),
                                       ("old-dead-recent", "dead", recent), ("old-dead-old", "dead", old),
                                       ("old-skipped", "skipped", old), ("recent-delivered", "delivered", recent)]:
            conn.execute(update(jobs).where(jobs.c.event_id == ids[name]).values(status=status, finished_at=finished))
        conn.execute(delivery_store.delivery_cursors.insert().values(name=delivery_store.FANOUT_CURSOR,
                                                                    event_id=ids["lake-old-unloaded"]))
    warehouse.advance_cursor(engine, wh["id"], ids["lake-old-loaded"])

    config = Config(database_url=db_url, event_retention_days=30, dead_letter_retention_days=14)
    counts = run_retention(engine, config, actor="test")
    assert counts == {"dead_letters": 1, "events": 4, "audit_entries": 0}  # the audit log keeps a year

    with read_only(engine) as conn:
        left = set(conn.execute(select(events_store.events.c.message_id)).scalars())
        left_jobs = {r.event_id: r.status for r in conn.execute(select(jobs.c.event_id, jobs.c.status))}
    assert left == {"old-queued", "old-retrying", "old-dead-recent", "recent-delivered", "lake-old-unloaded",
                    "old-not-fanned-out"}
    assert sorted(left_jobs.values()) == ["dead", "delivered", "queued", "retrying"]
    assert ids["old-delivered"] not in left_jobs and ids["old-dead-old"] not in left_jobs

    # 0 keeps everything.
    keep = Config(database_url=db_url, event_retention_days=0, dead_letter_retention_days=0, audit_retention_days=0)
    assert run_retention(engine, keep) == {"dead_letters": 0, "events": 0}
    entries = governance.list_entries(engine, action="retention")
    assert [e["counts"] for e in entries] == [{"dead_letters": 0, "events": 0},
                                                {"dead_letters": 1, "events": 4, "audit_entries": 0}]
    assert entries[1]["actor"] == "test"

    app = create_app(Config(database_url=db_url, delivery_workers=False), engine=engine, catalog=catalog,
                     planes=["server.delivery", "server.privacy"])
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        metrics = client.get("/metrics").text
        assert 'switchboard_store_rows{table="events"} 6.0' in metrics
        size = next(line for line in metrics.splitlines() if line.startswith("switchboard_store_bytes "))
        assert float(size.split()[1]) > 10_000
        usage = client.get("/api/v1/storage").json()
        assert usage["rows"]["events"] == 6 and usage["rows"]["dead_letters"] == 1 and usage["bytes"] > 10_000


def test_one_process_at_a_time_prunes_on_postgresql(pg, catalog):
    from server.store import erasure, open_store

    url = pg.create_database()
    first, second = open_store(url), open_store(url)
    try:
        with erasure.retention_lock(first) as mine:
            assert mine
            assert run_retention(second, Config(database_url=url)) is None  # busy: skipped, not run twice
        with erasure.retention_lock(second) as mine_now:
            assert mine_now  # released when the first run ended
    finally:
        first.dispose()
        second.dispose()
    assert [e["counts"] for e in governance.list_entries(open_store(url), action="retention")] == []


def test_the_server_runs_retention_in_the_background(sqlite_url, catalog, monkeypatch):
    from delivery_flow import wait_until
    from server.privacy import runner
    from server.store import open_store

    monkeypatch.setattr(runner, "RETENTION_FIRST_S", 0.0)  # instead of a minute after start
    monkeypatch.setattr(runner, "RETENTION_EVERY_S", 0.2)  # instead of every hour
    engine = open_store(sqlite_url)
    source = workspace.create_source(engine, "Site")
    old = datetime.now(timezone.utc) - timedelta(days=45)
    events_store.append(engine, events_store.rows_for(source["id"], old, [make_event("track", event="Old")]),
                        dedupe_window=86400)
    app = create_app(Config(database_url=sqlite_url, delivery_workers=True), engine=engine, catalog=catalog,
                     planes=["server.delivery", "server.privacy"])
    with TestClient(app):
        # The first runs may come before the fan-out has passed the event: it is kept until then.
        entry = wait_until(lambda: [e for e in governance.list_entries(engine, action="retention")
                                    if e["counts"]["events"]], timeout=20, what="a retention run that prunes")[0]
    assert entry["actor"] == "retention" and entry["counts"] == {"dead_letters": 0, "events": 1, "audit_entries": 0}
    with read_only(engine) as conn:
        assert conn.execute(select(events_store.events.c.id)).first() is None
    engine.dispose()

"""Sync now (API and CLI), sync history, and the scheduler inside the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from starlette.testclient import TestClient
from test_warehouse_support import build_warehouse, make_event, wh  # noqa: F401

from server.app import create_app
from server.config import Config
from server.store import audit, tokens, workspace
from server.store import warehouse as store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANES = ["server.health", "server.admin", "server.warehouse"]


def _client(wh, **config) -> TestClient:
    app = create_app(Config(database_url=wh.config.database_url, **{"allow_private_egress": True, **config}), engine=wh.engine,
                     catalog=wh.catalog, planes=PLANES)
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {tokens.create_token(wh.engine, 'test')}"
    return client


def test_sync_now_and_history_through_the_api(wh):
    with _client(wh, delivery_workers=False) as client:
        dest = wh.destination["id"]
        assert client.get(f"/api/v1/destinations/{dest}/syncs").json() == {"syncs": [], "cursor": 0, "waiting": 0}
        wh.emit(make_event("track", event="Order Completed", properties={"total": 5}),
                make_event("page", name="Home"))
        assert client.get(f"/api/v1/destinations/{dest}/syncs").json()["waiting"] == 2
        answer = client.post(f"/api/v1/destinations/{dest}/sync")
        assert answer.status_code == 200
        sync = answer.json()["sync"]
        assert sync["status"] == "succeeded" and sync["trigger"] == "api" and sync["events"] == 2
        assert sync["rows"] == {"tracks": 1, "order_completed": 1, "pages": 1}
        assert sync["started_at"] <= sync["finished_at"]
        assert wh.count("order_completed") == 1
        history = client.get(f"/api/v1/destinations/{dest}/syncs").json()
        assert [s["id"] for s in history["syncs"]] == [sync["id"]]
        assert history["cursor"] == 2 and history["waiting"] == 0
        assert client.get(f"/api/v1/destinations/{dest}/syncs?limit=abc").json()["code"] == "invalid_limit"
    [entry] = audit.list_entries(wh.engine, action="warehouse.sync")
    assert (entry["actor"], entry["subject"]) == ("token:test", f"destination:{dest}")
    assert entry["changes"] == {"summary": "Synced the warehouse (api): loaded 2 events", "sync_id": sync["id"],
                                "events": 2, "error": None}


def test_sync_api_needs_a_token_and_a_warehouse(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    hook = workspace.add_destination(wh.engine, wh.source["id"], slug="webhooks", mode="cloud", enabled=False,
                                     settings={})
    with _client(wh, delivery_workers=False) as client:
        dest = wh.destination["id"]
        for method, path in (("get", f"/api/v1/destinations/{dest}/syncs"), ("post", f"/api/v1/destinations/{dest}/sync")):
            answer = getattr(client, method)(path, headers={"Authorization": ""})
            assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
        missing = client.post("/api/v1/destinations/9999/sync")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        other = client.post(f"/api/v1/destinations/{hook['id']}/sync")
        assert other.status_code == 409 and other.json()["code"] == "not_a_warehouse"
        assert "webhooks" in other.json()["message"]


def test_a_failed_sync_shows_in_the_history_with_its_error(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    bad_dir = tmp_path / "not-a-dir"
    bad_dir.write_text("a file where a directory should be")
    workspace.update_destination(wh.engine, wh.destination["id"],
                                 settings={"target": "sqlite", "sqlite_path": str(bad_dir / "w.db")})
    wh.emit(make_event("page"))
    with _client(wh, delivery_workers=False) as client:
        sync = client.post(f"/api/v1/destinations/{wh.destination['id']}/sync").json()["sync"]
        assert sync["status"] == "failed" and "cannot open the warehouse" in sync["error"]
        assert str(bad_dir) not in sync["error"]  # the file path is a secret setting
        assert client.get(f"/api/v1/destinations/{wh.destination['id']}/syncs").json()["cursor"] == 0


def test_the_scheduler_loads_waiting_events_on_its_own(wh):
    wh.emit(make_event("track", messageId="first", event="Signed Up"))
    with _client(wh, delivery_workers=True):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "signed_up" not in wh.tables():
            time.sleep(0.1)
        assert wh.query("SELECT id FROM signed_up") == [("first",)]
    history = store.list_syncs(wh.engine, wh.destination["id"])
    assert history and history[-1]["trigger"] == "schedule" and history[-1]["error"] is None


def test_the_scheduler_syncs_early_when_a_full_batch_waits(tmp_path):
    wh = build_warehouse("sqlite", tmp_path, sync_interval_seconds=3600, batch_rows=3)
    wh.emit(make_event("page", messageId="p0"))
    with _client(wh, delivery_workers=True):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "pages" not in wh.tables():
            time.sleep(0.1)
        assert wh.count("pages") == 1  # first pass: waiting events are loaded at start-up
        wh.emit(make_event("page", messageId="p1"))
        time.sleep(2.5)  # one event waits, the interval (an hour) has not passed: nothing happens
        assert wh.count("pages") == 1
        wh.emit(make_event("page", messageId="p2"), make_event("page", messageId="p3"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and wh.count("pages") < 4:
            time.sleep(0.1)
        assert wh.count("pages") == 4


def test_no_scheduler_when_delivery_workers_are_off(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    wh.emit(make_event("page"))
    with _client(wh, delivery_workers=False):
        time.sleep(2)
    assert not wh.sqlite_path.exists() or "pages" not in wh.tables()


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_sync_and_history(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    env = {"SWITCHBOARD_DATABASE_URL": wh.config.database_url}
    wh.emit(make_event("identify", userId="u1", traits={"email": "a@example.com"}))
    done = _cli("warehouse", "sync", str(wh.destination["id"]), env=env)
    assert done.returncode == 0, done.stderr
    assert "identifies=1" in done.stdout and "users=1" in done.stdout and "1 events" in done.stdout
    assert wh.query("SELECT id, email FROM users") == [("u1", "a@example.com")]
    listed = _cli("warehouse", "syncs", str(wh.destination["id"]), "--json", env=env)
    assert json.loads(listed.stdout)[0]["trigger"] == "cli"
    assert [e["actor"] for e in audit.list_entries(wh.engine, action="warehouse.sync")] == ["cli"]
    missing = _cli("warehouse", "sync", "999", env=env)
    assert missing.returncode == 2 and "destination 999" in missing.stderr


@pytest.mark.postgres
def test_cli_sync_fails_loudly_when_the_warehouse_is_unreachable(tmp_path, pg):
    wh = build_warehouse("postgres", tmp_path, pg)
    workspace.update_destination(wh.engine, wh.destination["id"], settings={
        "target": "postgresql", "database_url": pg.url("missing_db")})
    wh.emit(make_event("page"))
    done = _cli("warehouse", "sync", str(wh.destination["id"]), env={"SWITCHBOARD_DATABASE_URL": wh.config.database_url})
    assert done.returncode == 1 and "missing_db" in done.stdout


def test_one_loader_per_warehouse_at_a_time(wh):
    """While another loader holds the warehouse, the scheduler skips it and "sync now" waits."""
    import threading

    from server.warehouse.sync import open_target, settings_of

    wh.emit(make_event("page", messageId="p1"))
    holder = open_target(wh.config, wh.destination, wh.source, settings_of(wh.catalog, wh.destination))
    finished: list[dict] = []
    try:
        with holder.lock(wait=True):
            assert wh.sync(trigger="schedule", wait=False) is None  # busy: skipped, nothing recorded
            waiting = threading.Thread(target=lambda: finished.append(wh.sync()))
            waiting.start()
            time.sleep(1.0)
            assert not finished and "pages" not in wh.tables()
        waiting.join(30)
    finally:
        holder.close()
    assert finished and finished[0]["rows"] == {"pages": 1}
    assert [s["trigger"] for s in store.list_syncs(wh.engine, wh.destination["id"])] == ["manual"]


@pytest.mark.postgres
def test_a_warehouse_connection_lost_mid_sync_is_a_failed_sync_not_a_crash(tmp_path, pg):
    import threading

    import psycopg

    wh = build_warehouse("postgres", tmp_path, pg)
    wh.emit(make_event("page", messageId="p1"))
    target_dsn = wh.target_url.replace("+psycopg", "")
    with psycopg.connect(target_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (0x5B0A0002, wh.destination["id"]))
        with _client(wh, delivery_workers=False) as client:
            answers = []
            waiting = threading.Thread(
                target=lambda: answers.append(client.post(f"/api/v1/destinations/{wh.destination['id']}/sync")))
            waiting.start()
            # The loader now waits for the lock; the database drops its connection (a restart).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                killed = holder.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'SELECT pg_advisory_lock%%' AND pid <> pg_backend_pid()").fetchall()
                if killed:
                    break
                time.sleep(0.05)
            waiting.join(30)
    assert answers and answers[0].status_code == 200
    sync = answers[0].json()["sync"]
    assert sync["status"] == "failed" and sync["error"]
    assert store.get_cursor(wh.engine, wh.destination["id"]) == 0
    assert wh.sync()["rows"] == {"pages": 1}  # the next sync loads it


@pytest.mark.postgres
def test_an_event_that_commits_late_with_a_lower_id_is_not_skipped(tmp_path, pg):
    """Two collector processes on PostgreSQL: id 1 may commit after id 2. A sync that ran in
    between must not move its cursor past 1, or that event would never reach the warehouse."""
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from server.store.events import events as events_table, rows_for

    wh = build_warehouse("postgres", tmp_path, pg)
    late_conn = wh.engine.connect()
    late = late_conn.begin()

    late_event = make_event("track", event="Order Completed", messageId="late-1")
    late_conn.execute(insert(events_table), rows_for(wh.source["id"], datetime.now(timezone.utc), [late_event]))  # takes the lower id, not committed yet
    wh.emit(make_event("track", event="Order Completed", messageId="early-2"))  # higher id, committed

    started = time.monotonic()
    first = wh.sync()  # the late writer is still open: the sync must not load past it
    assert time.monotonic() - started >= 5.0 - 0.5  # it waited for the open transaction, then gave up
    assert first["error"] is None and first["events"] == 0
    late.commit()
    late_conn.close()
    second = wh.sync()
    assert second["events"] == 2
    assert sorted(r[0] for r in wh.query("SELECT id FROM order_completed")) == ["early-2", "late-1"]
    wh.engine.dispose()

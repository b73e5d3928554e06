"""The warehouse destination end to end: a real `switchboard serve`, a source and a warehouse
destination created through the admin API, events sent to the real collector
(POST /v1/batch with the write key), and the scheduler loading them into Segment's tables —
on a SQLite file and on a real PostgreSQL database."""

from __future__ import annotations

import base64
import sqlite3
import time

import httpx
import psycopg
import pytest

TOKEN = "warehouse-e2e-token"


def _wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("the warehouse was not loaded in time")


@pytest.mark.parametrize("target", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_events_sent_to_the_collector_land_in_the_warehouse(target, tmp_path, live_server_factory, request):
    if target == "postgresql":
        target_url = request.getfixturevalue("pg").create_database()
        settings = {"target": "postgresql", "database_url": target_url, "sync_interval_seconds": 1}
    else:
        wh_path = tmp_path / "shop-warehouse.db"
        settings = {"target": "sqlite", "sqlite_path": str(wh_path), "sync_interval_seconds": 1}
    server = live_server_factory(SWITCHBOARD_ADMIN_TOKEN=TOKEN)
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    source = admin.post("/api/v1/sources", json={"name": "Web Shop"}).json()
    created = admin.post(f"/api/v1/sources/{source['id']}/destinations",
                         json={"slug": "warehouse", "mode": "cloud", "enabled": True, "settings": settings})
    assert created.status_code == 201, created.text
    destination_id = created.json()["id"]
    # The secret settings never come back.
    assert "postgresql://" not in created.text and str(tmp_path) not in created.text

    batch = {"batch": [
        {"type": "identify", "messageId": "id-1", "userId": "u-42",
         "traits": {"email": "grace@example.com", "accountType": "pro", "address": {"city": "Lyon"}}},
        {"type": "track", "messageId": "tr-1", "userId": "u-42", "event": "Order Completed",
         "properties": {"orderId": "o-1", "revenue": 99.5, "products": [{"sku": "A"}]}},
        {"type": "track", "messageId": "tr-2", "anonymousId": "a-1", "event": "Register",
         "properties": {"plan": "Pro", "accountType": "Facebook"}},
        {"type": "page", "messageId": "pg-1", "anonymousId": "a-1", "name": "Home",
         "properties": {"url": "https://shop.example/", "path": "/"}},
        {"type": "screen", "messageId": "sc-1", "userId": "u-42", "name": "Cart"},
        {"type": "group", "messageId": "gr-1", "userId": "u-42", "groupId": "acme", "traits": {"name": "Acme"}},
        {"type": "alias", "messageId": "al-1", "userId": "u-42", "previousId": "a-1"},
        {"type": "track", "messageId": "tr-3", "userId": "u-42", "event": "Secret Thing",
         "integrations": {"Warehouse": False}},
    ], "context": {"library": {"name": "analytics-python", "version": "2.3.0"}},
        "sentAt": "2024-05-01T12:00:00.000Z"}
    auth = base64.b64encode(f"{source['write_key']}:".encode()).decode()
    answer = httpx.post(f"{server.url}/v1/batch", json=batch, headers={"Authorization": f"Basic {auth}"})
    assert answer.status_code == 200, answer.text

    if target == "postgresql":
        def query(sql):
            with psycopg.connect(target_url.replace("+psycopg", "")) as db:
                db.execute("SET search_path TO web_shop")  # the source's slug names the schema
                return db.execute(sql).fetchall()

        def loaded():
            with psycopg.connect(target_url.replace("+psycopg", "")) as db:
                return db.execute("SELECT count(*) FROM information_schema.tables "
                                  "WHERE table_schema = 'web_shop' AND table_name = 'aliases'").fetchone()[0]
    else:
        def query(sql):
            with sqlite3.connect(wh_path) as db:
                return db.execute(sql).fetchall()

        def loaded():
            return wh_path.exists() and query("SELECT count(*) FROM sqlite_master WHERE name = 'aliases'")[0][0]

    def settled_history():
        # A table can be visible while the same sync still loads the others: wait until no
        # sync is running before reading the warehouse.
        syncs = admin.get(f"/api/v1/destinations/{destination_id}/syncs").json()["syncs"]
        return syncs if syncs and all(s["status"] != "running" for s in syncs) else None

    _wait_for(loaded)
    history = _wait_for(settled_history)
    assert history[-1]["trigger"] == "schedule" and history[-1]["status"] == "succeeded"

    assert query("SELECT id, event, event_text FROM tracks ORDER BY id") == [
        ("tr-1", "order_completed", "Order Completed"), ("tr-2", "register", "Register")]
    assert query("SELECT order_id, revenue, products, context_library_name FROM order_completed") == [
        ("o-1", 99.5, '[{"sku":"A"}]', "analytics-python")]
    assert query("SELECT plan, account_type FROM register") == [("Pro", "Facebook")]
    assert query("SELECT id, email, account_type, address_city FROM users") == [
        ("u-42", "grace@example.com", "pro", "Lyon")]
    assert query("SELECT id, user_id FROM identifies") == [("id-1", "u-42")]
    assert query("SELECT id, name, url, path FROM pages") == [("pg-1", "Home", "https://shop.example/", "/")]
    assert query("SELECT id, name FROM screens") == [("sc-1", "Cart")]
    assert query("SELECT group_id, name FROM groups") == [("acme", "Acme")]
    assert query("SELECT id, name FROM accounts") == [("acme", "Acme")]
    assert query("SELECT previous_id, user_id FROM aliases") == [("a-1", "u-42")]
    (timestamps,) = query("SELECT received_at, sent_at, timestamp, original_timestamp FROM pages")
    assert all(timestamps)

    # "Sync now" through the API after a resend of the same batch: nothing new, no duplicates.
    assert httpx.post(f"{server.url}/v1/batch", json=batch, headers={"Authorization": f"Basic {auth}"}).status_code == 200
    now = admin.post(f"/api/v1/destinations/{destination_id}/sync").json()["sync"]
    assert now["status"] == "succeeded"
    assert query("SELECT count(*) FROM tracks") == [(2,)]

"""Regulations end to end, on SQLite and PostgreSQL (store and warehouse alike): a
suppress_with_delete erases a user's events from the log, the delivery jobs, the dead letters and
every warehouse table, later events of that user are acknowledged but neither stored nor
delivered, and other users are untouched. Plus the API's validation and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from test_warehouse_support import wh  # noqa: F401

from delivery_flow import wait_until
from delivery_vendor import Vendor
from server.app import create_app
from server.config import Config
from server.store import delivery as delivery_store
from server.store import events as events_store
from server.store import governance, tokens, workspace
from server.store.engine import read_only

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent


def refuse(record):
    return 400, {}, b"no"


def logged(engine) -> list[dict]:
    with read_only(engine) as conn:
        rows = conn.execute(select(events_store.events.c.id, events_store.events.c.payload)).all()
    return [{"id": r.id, **json.loads(r.payload)} for r in rows]


def jobs_by_user(engine) -> dict[str, list[str]]:
    """userId → statuses of the jobs of that user's events (through the log: jobs hold no userId)."""
    users = {e["id"]: e.get("userId") for e in logged(engine)}
    with read_only(engine) as conn:
        rows = conn.execute(select(delivery_store.delivery_jobs.c.event_id, delivery_store.delivery_jobs.c.status)).all()
    found: dict[str, list[str]] = {}
    for event_id, status in rows:
        found.setdefault(users.get(event_id, "<orphan>"), []).append(status)
    return found


def batch(user: str, n: int, tag: str) -> dict:
    items = []
    for i in range(n):
        items.append({"type": "track", "event": "Order Completed", "userId": user, "messageId": f"{tag}-{user}-t{i}",
                      "properties": {"total": i}})
    items.append({"type": "identify", "userId": user, "messageId": f"{tag}-{user}-i", "traits": {"email": f"{user}@x.example"}})
    items.append({"type": "page", "userId": user, "messageId": f"{tag}-{user}-p", "name": "Home"})
    return {"batch": items}


def test_suppress_with_delete_end_to_end(wh, catalog):  # noqa: F811
    engine = wh.engine
    with Vendor() as vendor, Vendor(refuse) as refusing:
        good = workspace.add_destination(engine, wh.source["id"], slug="webhooks", mode="cloud", enabled=True,
                                         settings={"url": vendor.url + "/in"})
        workspace.add_destination(engine, wh.source["id"], slug="webhooks", mode="cloud", enabled=True,
                                  settings={"url": refusing.url + "/in"})
        config = Config(database_url=wh.config.database_url, delivery_workers=True, allow_private_egress=True)
        app = create_app(config, engine=engine, catalog=catalog)
        token = tokens.create_token(engine, "test")
        key = wh.source["write_key"]
        with TestClient(app, raise_server_exceptions=False) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            for user in ("ada", "bob"):
                assert client.post("/v1/batch", json={**batch(user, 5, "before"), "writeKey": key}).status_code == 200
            # 14 events: each reaches the good vendor, and becomes a dead letter at the refusing one.
            vendor.wait_for(14)
            wait_until(lambda: sum(s == "dead" for s in sum(jobs_by_user(engine).values(), [])) == 14, what="dead letters")
            # The scheduler may have loaded them already; "sync now" loads whatever is left.
            sync = client.post(f"/api/v1/destinations/{wh.destination['id']}/sync").json()["sync"]
            assert sync["error"] is None
            assert wh.count("tracks") == 10 and wh.count("identifies") == 2 and wh.count("pages") == 2
            assert wh.query("SELECT count(*) FROM order_completed WHERE user_id = 'ada'") == [(5,)]
            assert sorted(r[0] for r in wh.query("SELECT id FROM users")) == ["ada", "bob"]

            created = client.post("/api/v1/regulations", json={"type": "suppress_with_delete", "user_ids": ["ada"]})
            assert created.status_code == 201, created.text
            regulation = created.json()
            assert regulation["type"] == "suppress_with_delete" and regulation["status"] in ("pending", "running", "finished")
            assert regulation["user_ids"] == ["ada"] and regulation["source_ids"] is None
            done = wait_until(lambda: (r := client.get(f"/api/v1/regulations/{regulation['id']}").json())["status"]
                              in ("finished", "failed") and r, what="the deletion")
            assert done["status"] == "finished", done
            counts = done["counts"]
            assert counts["events"] == 7 and counts["dead_letters"] == 7 and counts["delivery_jobs"] == 7
            assert counts["warehouse.users"] == 1 and counts["warehouse.order_completed"] == 5
            assert counts["warehouse.tracks"] == 5 and counts["warehouse.identifies"] == 1 and counts["warehouse.pages"] == 1

            # Gone from the log, the jobs and dead letters, and every warehouse table; bob untouched.
            assert {e.get("userId") for e in logged(engine)} == {"bob"}
            by_user = jobs_by_user(engine)
            assert set(by_user) == {"bob"} and sorted(by_user["bob"]) == ["dead"] * 7 + ["delivered"] * 7
            for table in sorted(wh.tables()):
                columns = wh.columns(table)
                if "user_id" in columns:
                    assert wh.query(f'SELECT count(*) FROM "{table}" WHERE user_id = %s' if wh.kind == "postgres"
                                    else f'SELECT count(*) FROM "{table}" WHERE user_id = ?', ("ada",)) == [(0,)], table
            assert [r[0] for r in wh.query("SELECT id FROM users")] == ["bob"]
            assert wh.query("SELECT count(*) FROM order_completed WHERE user_id = 'bob'") == [(5,)]

            # Later events of ada: acknowledged, not stored, not delivered; bob's still flow.
            before = len(vendor.snapshot())
            assert client.post("/v1/batch", json={**batch("ada", 2, "after"), "writeKey": key}).status_code == 200
            assert client.post("/v1/track", json={"event": "X", "userId": "ada", "writeKey": key}).status_code == 200
            assert client.post("/v1/batch", json={**batch("bob", 1, "after"), "writeKey": key}).status_code == 200
            vendor.wait_for(before + 3)
            time.sleep(0.5)
            assert {e.get("userId") for e in logged(engine)} == {"bob"}
            assert all(r.json().get("userId") != "ada" for r in vendor.snapshot()[before:])
            assert len(vendor.snapshot()) == before + 3
            # Counted: in /metrics (all processes, from the store) once the counts are flushed.
            def suppressed_metric() -> bool:
                text = client.get("/metrics").text
                return f'switchboard_suppressed_events_total{{source_id="{wh.source["id"]}"}} 5.0' in text
            wait_until(suppressed_metric, timeout=10, what="the suppressed counter")

            # unsuppress lifts it: ada's next events are stored again.
            lifted = client.post("/api/v1/regulations", json={"type": "unsuppress", "user_ids": ["ada"]})
            assert lifted.status_code == 201 and lifted.json()["status"] == "finished"
            assert client.post("/v1/track", json={"event": "Back", "userId": "ada", "writeKey": key}).status_code == 200
            wait_until(lambda: "ada" in {e.get("userId") for e in logged(engine)}, what="ada stored again")

            actions = [e["action"] for e in client.get("/api/v1/governance").json()["entries"]]
            assert actions[:3] == ["regulation", "regulation.finished", "regulation"]
            finished = client.get("/api/v1/governance?action=regulation.finished").json()["entries"]
            assert finished[0]["counts"]["events"] == 7 and finished[0]["actor"] == "token:test"
    assert good["id"]


def test_regulation_api_validation(db_url, engine, catalog, admin_token):
    app = create_app(Config(database_url=db_url, delivery_workers=False), engine=engine, catalog=catalog,
                     planes=["server.privacy"])
    source = workspace.create_source(engine, "Site")
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        cases = [
            ({"type": "forget", "user_ids": ["a"]}, "type"),
            ({"user_ids": ["a"]}, "type"),
            ({"type": "delete"}, "user_ids"),
            ({"type": "delete", "user_ids": []}, "user_ids"),
            ({"type": "delete", "user_ids": "a"}, "user_ids"),
            ({"type": "delete", "user_ids": ["a", 7]}, "user_ids"),
            ({"type": "delete", "user_ids": [""]}, "user_ids"),
            ({"type": "delete", "user_ids": ["u"] * 1001}, "user_ids"),
            ({"type": "delete", "user_ids": ["a"], "source_ids": [source["id"] + 99]}, "source_ids"),
            ({"type": "delete", "user_ids": ["a"], "source_ids": "all"}, "source_ids"),
            ({"type": "delete", "user_ids": ["a"], "source_ids": [True]}, "source_ids"),
            ({"type": "delete", "user_ids": ["a"], "sources": [1]}, "sources"),
        ]
        for body, field in cases:
            answer = client.post("/api/v1/regulations", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["code"] == "validation_error" and answer.json()["message"], body
            assert answer.json().get("field") == field, (body, answer.json())
        assert client.post("/api/v1/regulations", content=b"[1]").json()["code"] == "malformed_json"
        assert client.post("/api/v1/regulations", content=b"{").json()["code"] == "malformed_json"
        assert client.get("/api/v1/regulations/99").json()["code"] == "not_found"
        assert client.get("/api/v1/regulations?limit=0").json()["code"] == "invalid_parameter"
        assert client.post("/api/v1/regulations", json={"type": "delete", "user_ids": ["a"]},
                           headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/api/v1/regulations").json() == {"regulations": []}  # nothing was stored
        ok = client.post("/api/v1/regulations", json={"type": "suppress", "user_ids": ["a", "a", "b"],
                                                      "source_ids": [source["id"]]})
        assert ok.status_code == 201
        body = ok.json()
        assert body["status"] == "finished" and body["user_ids"] == ["a", "b"] and body["source_ids"] == [source["id"]]
        assert set(body) >= {"id", "type", "status", "created_at", "user_ids", "source_ids", "counts"}
        assert client.get("/api/v1/regulations").json()["regulations"][0]["id"] == body["id"]
        # Any userId the collector stores can be named, a blank one included (it refuses only "").
        blank = client.post("/api/v1/regulations", json={"type": "suppress", "user_ids": [" ", "\t"]})
        assert blank.status_code == 201 and blank.json()["user_ids"] == [" ", "\t"]
    assert governance.list_entries(engine, action="regulation")[0]["subject"] == f"regulation {blank.json()['id']}"


def test_cli_regulate(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "server.cli", "regulate", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    made = cli("create", "delete", "u1", "u2", "--json")
    assert made.returncode == 0, made.stderr
    regulation = json.loads(made.stdout)
    assert regulation["type"] == "delete" and regulation["status"] == "pending" and regulation["user_ids"] == ["u1", "u2"]
    shown = cli("show", str(regulation["id"]))
    assert shown.returncode == 0 and f"regulation {regulation['id']} delete pending" in shown.stdout
    assert f"regulation {regulation['id']}" in cli("list").stdout
    bad = cli("create", "delete", "u1", "--source", "42")
    assert bad.returncode != 0 and "No source 42" in bad.stderr
    assert cli("show", "99").returncode != 0


def test_concurrent_suppressions_of_one_user_all_succeed(engine):
    import threading

    from server.store import regulations

    errors: list[Exception] = []

    def create(i: int) -> None:
        try:
            regulations.create(engine, type="suppress", user_ids=["same", f"u{i}"], source_ids=None, actor="t")
        except Exception as exc:  # a unique-key race would surface here
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    version, pairs = regulations.read_suppressions(engine)
    assert version == 6 and pairs == {("same", 0), *((f"u{i}", 0) for i in range(6))}


# A userId near the event's 32 KB whose LIKE pattern would be over SQLite's 50,000 bytes (each "%"
# is escaped), with characters JSON escapes, and a second one that differs in its last character.
LONG = "ü" * 1500 + '"\\%_\x01' + "%" * 26_000 + "x"
TWIN = LONG[:-1] + "y"


def test_a_user_with_a_long_id_is_deleted_suppressed_and_lifted(db_url, engine, catalog, admin_token):
    from server.store.suppression_lookup import suppression_of

    app = create_app(Config(database_url=db_url, delivery_workers=True), engine=engine, catalog=catalog)
    source = workspace.create_source(engine, "Site")
    key = source["write_key"]

    def batch(user: str, n: int, tag: str) -> dict:  # messageIds at most 100 characters
        mark = f"{tag}-{[LONG, TWIN, 'short'].index(user)}"
        return {"batch": [*({"type": "track", "event": "Order Completed", "userId": user, "messageId": f"{mark}-t{i}"}
                            for i in range(n)),
                          {"type": "identify", "userId": user, "messageId": f"{mark}-i", "traits": {"plan": "pro"}},
                          {"type": "page", "userId": user, "messageId": f"{mark}-p", "name": "Home"}]}

    def users() -> dict[str, int]:
        found: dict[str, int] = {}
        for event in logged(engine):
            found[event.get("userId")] = found.get(event.get("userId"), 0) + 1
        return found

    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        for user in (LONG, TWIN, "short"):
            assert client.post("/v1/batch", json={**batch(user, 2, "before"), "writeKey": key}).status_code == 200
        wait_until(lambda: users() == {LONG: 4, TWIN: 4, "short": 4}, what="the events stored")

        created = client.post("/api/v1/regulations", json={"type": "suppress_with_delete", "user_ids": [LONG]})
        assert created.status_code == 201, created.text
        regulation = created.json()
        assert regulation["user_ids"] == [LONG] and regulation["counts"]["suppressed_users"] == 1
        done = wait_until(lambda: (r := client.get(f"/api/v1/regulations/{regulation['id']}").json())["status"]
                          in ("finished", "failed") and r, what="the deletion")
        assert done["status"] == "finished" and done["counts"]["events"] == 4, done
        assert users() == {TWIN: 4, "short": 4}

        # Suppressed from now on (the collector and the debugger's lookup alike); the twin is not.
        assert suppression_of(engine, LONG, source["id"])["regulation_id"] == regulation["id"]
        assert suppression_of(engine, TWIN, source["id"]) is None
        for user in (LONG, TWIN):
            assert client.post("/v1/batch", json={**batch(user, 1, "after"), "writeKey": key}).status_code == 200
        wait_until(lambda: users().get(TWIN) == 7, what="the twin's later events")
        time.sleep(0.3)
        assert LONG not in users()

        lifted = client.post("/api/v1/regulations", json={"type": "unsuppress", "user_ids": [LONG]})
        assert lifted.status_code == 201 and lifted.json()["counts"]["unsuppressed"] == 1
        assert client.post("/v1/track", json={"event": "Back", "userId": LONG, "writeKey": key}).status_code == 200
        wait_until(lambda: users().get(LONG) == 1, what="the long id stored again")
        assert suppression_of(engine, LONG, source["id"]) is None

        # The limit is the event's: an id no event can carry is refused.
        too_long = client.post("/api/v1/regulations", json={"type": "delete", "user_ids": ["u" * (32 * 1024 + 1)]})
        assert too_long.status_code == 422 and too_long.json()["field"] == "user_ids"

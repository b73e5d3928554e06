"""Skipped events, seen and re-loaded (server/warehouse/reload.py, the API, the CLI and the web
page): once the cause is fixed, a re-load brings exactly the skipped events in, without doubling
a row; what is still refused stays listed; what left the log is forgotten."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from starlette.testclient import TestClient
from test_warehouse_isolation import allow_unlucky, clicks, refuse_unlucky
from test_warehouse_support import build_warehouse, wh  # noqa: F401
from test_web import HTML, signed_in, web  # noqa: F401  (fixtures)

from server.app import create_app
from server.config import Config
from server.store import audit, tokens, workspace
from server.store import warehouse_skipped
from server.store.events import events as events_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _skip_two(wh) -> dict:
    """A warehouse where clicks 13 and 113 (events 15 and 115) were refused and skipped."""
    wh.emit(*clicks([1000]))
    wh.sync()
    refuse_unlucky(wh)
    wh.emit(*clicks(range(200)))
    sync = wh.sync()
    assert sync["skipped"] == 2
    return sync


def _listed(wh) -> list[tuple]:
    entries, _ = warehouse_skipped.list_skipped(wh.engine, wh.destination["id"])
    return [(e["event_id"], e["message_id"], e["table"]) for e in entries]


def test_a_reload_after_the_fix_loads_exactly_the_skipped_events(wh):
    _skip_two(wh)
    assert wh.sync(reload=True)["skipped"] == 2  # not fixed yet: refused again, still listed
    assert _listed(wh) == [(115, "click-113", "clicked"), (15, "click-13", "clicked")]

    allow_unlucky(wh)
    reloaded = wh.sync(reload=True)
    assert reloaded["error"] is None and reloaded["skipped"] == 0
    assert reloaded["rows"] == {"tracks": 0, "clicked": 2}  # tracks had them already: not doubled
    assert "re-loaded skipped events: 2 loaded, 0 refused again" in reloaded["notices"]
    assert _listed(wh) == []
    assert wh.query("SELECT count(*), count(DISTINCT id) FROM clicked")[0] == (201, 201)
    assert wh.query("SELECT n, email FROM clicked WHERE n IN (13, 113) ORDER BY n") == [
        (13, "user13@example.com"), (113, "user113@example.com")]
    assert wh.count("tracks") == 201


def test_skipped_events_gone_from_the_log_are_forgotten(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    _skip_two(wh)
    with wh.engine.begin() as conn:  # as retention or a delete regulation would
        conn.execute(events_table.delete().where(events_table.c.id == 15))
    allow_unlucky(wh)
    reloaded = wh.sync(reload=True)
    assert "re-loaded skipped events: 1 loaded, 0 refused again, 1 no longer in the event log (forgotten)" in (
        reloaded["notices"])
    assert _listed(wh) == [] and wh.query("SELECT n FROM clicked WHERE n % 100 = 13") == [(113,)]


def _client(wh) -> TestClient:
    app = create_app(Config(database_url=wh.config.database_url, delivery_workers=False, allow_private_egress=True),
                     engine=wh.engine, catalog=wh.catalog, planes=["server.health", "server.admin", "server.warehouse"])
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {tokens.create_token(wh.engine, 'test')}"
    return client


def test_the_api_lists_skipped_events_and_reloads_them(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    sync = _skip_two(wh)
    dest = wh.destination["id"]
    with _client(wh) as client:
        history = client.get(f"/api/v1/destinations/{dest}/syncs").json()
        assert history["syncs"][0]["skipped"] == 2 and history["syncs"][0]["status"] == "succeeded"
        listed = client.get(f"/api/v1/destinations/{dest}/skipped?limit=1").json()
        assert listed["total"] == 2
        [entry] = listed["skipped"]
        assert entry["event_id"] == 115 and entry["message_id"] == "click-113" and entry["table"] == "clicked"
        assert entry["error"] == "IntegrityError: unlucky number" and entry["sync_id"] == sync["id"]
        assert entry["skipped_at"].startswith("20")
        assert client.get(f"/api/v1/destinations/{dest}/skipped?limit=0").json()["code"] == "invalid_limit"
        assert client.get("/api/v1/destinations/999/skipped").status_code == 404

        allow_unlucky(wh)
        reloaded = client.post(f"/api/v1/destinations/{dest}/skipped/reload").json()["sync"]
        assert reloaded["status"] == "succeeded" and reloaded["rows"] == {"tracks": 0, "clicked": 2} and reloaded["skipped"] == 0
        assert client.get(f"/api/v1/destinations/{dest}/skipped").json() == {"skipped": [], "total": 0}
    [entry] = audit.list_entries(wh.engine, action="warehouse.sync")
    assert entry["changes"]["summary"] == "Synced the warehouse (api): re-loaded skipped events and loaded 0 events"


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_lists_skipped_events_and_reloads_them(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    wh.emit(*clicks([1000]))
    wh.sync()
    refuse_unlucky(wh)
    wh.emit(*clicks(range(20)))
    env = {"SWITCHBOARD_DATABASE_URL": wh.config.database_url}
    synced = _cli("warehouse", "sync", str(wh.destination["id"]), env=env)
    assert synced.returncode == 0, synced.stderr
    assert "ok; 20 events; 1 skipped; clicked=19, tracks=20" in synced.stdout
    assert "notice: skipped event click-13 (#15) in clicked: IntegrityError: unlucky number" in synced.stdout
    listed = _cli("warehouse", "skipped", str(wh.destination["id"]), env=env)
    assert "event #15 click-13 clicked: IntegrityError: unlucky number" in listed.stdout
    assert f"warehouse sync {wh.destination['id']} --reload-skipped" in listed.stdout
    as_json = json.loads(_cli("warehouse", "skipped", str(wh.destination["id"]), "--json", env=env).stdout)
    assert as_json["total"] == 1 and as_json["skipped"][0]["message_id"] == "click-13"

    allow_unlucky(wh)
    reloaded = _cli("warehouse", "sync", str(wh.destination["id"]), "--reload-skipped", env=env)
    assert reloaded.returncode == 0 and "clicked=1" in reloaded.stdout
    assert _cli("warehouse", "skipped", str(wh.destination["id"]), env=env).stdout == (
        "no skipped events: the warehouse took every event\n")
    assert wh.query("SELECT count(*) FROM clicked")[0] == (21,)


def test_the_web_page_shows_skipped_events_and_reloads_them(signed_in, tmp_path):
    import sqlite3

    key = workspace.get_source(signed_in.engine, 1)["write_key"]

    def click(n):
        sent = signed_in.post("/v1/track", json={"writeKey": key, "event": "Clicked", "messageId": f"click-{n}",
                                                 "anonymousId": "a-1", "properties": {"n": n}})
        assert sent.status_code == 200

    click(1)
    r = signed_in.post("/catalog/warehouse/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "target": "sqlite",
        "sqlite_path": str(tmp_path / "wh.db")})
    dest_url = r.headers["location"]
    signed_in.post(dest_url + "/enabled", data={"csrf_token": signed_in.csrf, "enabled": "true"})
    assert "Synced 1 event." in signed_in.post(dest_url + "/sync", data={"csrf_token": signed_in.csrf},
                                               headers=HTML).text
    with sqlite3.connect(tmp_path / "wh.db") as db:
        db.execute("CREATE TRIGGER unlucky BEFORE INSERT ON clicked WHEN NEW.n = 13 "
                   "BEGIN SELECT RAISE(ABORT, 'unlucky number'); END")
    click(13)
    click(14)
    done = signed_in.post(dest_url + "/sync", data={"csrf_token": signed_in.csrf}, headers=HTML)
    assert "Synced 2 events. Skipped 1 the warehouse refused." in done.text
    page = signed_in.get(dest_url, headers=HTML).text
    assert "Skipped events" in page and "click-13" in page and "IntegrityError: unlucky number" in page
    assert 'id="reload-skipped"' in page

    with sqlite3.connect(tmp_path / "wh.db") as db:
        db.execute("DROP TRIGGER unlucky")
    again = signed_in.post(dest_url + "/sync", data={"csrf_token": signed_in.csrf, "reload_skipped": "1"},
                           headers=HTML)
    assert "Re-loaded the skipped events. Synced 0 events." in again.text
    assert 'id="reload-skipped"' not in signed_in.get(dest_url, headers=HTML).text
    with sqlite3.connect(tmp_path / "wh.db") as db:
        assert db.execute("SELECT n FROM clicked ORDER BY n").fetchall() == [(1,), (13,), (14,)]

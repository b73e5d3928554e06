"""Destination filters in cloud routing and the admin API, and history replay, end to end on
real SQLite and PostgreSQL with loopback webhook receivers and a real DeliveryService."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from starlette.testclient import TestClient

from delivery_flow import RunningService, append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.api import filters as filter_service
from server.app import create_app
from server.config import Config
from server.delivery.history import start_replay
from server.store import delivery as store
from server.store import events, replays, workspace


def hook(url: str):
    return {"slug": "webhooks", "settings": {"url": url}}


@pytest.fixture
def api(db_url, engine, catalog, admin_token):
    config = Config(database_url=db_url, delivery_workers=False, allow_private_egress=True, replay_rate=1000)
    app = create_app(config, engine=engine, catalog=catalog, planes=["server.admin", "server.delivery"])
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {admin_token}"
        yield c


def test_filters_api_validates_orders_and_bumps_the_settings_version(api, engine):
    source, (dest,) = source_with(engine, hook("http://127.0.0.1:9/h"))
    base = f"/api/v1/destinations/{dest['id']}/filters"
    assert api.get(base).json() == {"filters": []}
    version = workspace.get_source(engine, source["id"])["settings_version"]

    bad = api.post(base, json={"if": 'type = "track" and (event = "x"', "action": "drop"})
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_filter" and bad.json()["position"] == 31 and "filter 1" in bad.json()["message"]
    assert api.post(base, json={"if": "true", "action": "sample"}).json()["field"] == "filters[0].percent"

    first = api.post(base, json={"if": 'event = "Spam"', "action": "drop"})
    assert first.status_code == 201
    api.post(base, json={"if": "true", "action": "drop_properties", "fields": ["properties.email"]})
    listed = api.get(base).json()["filters"]
    assert [f["action"] for f in listed] == ["drop", "drop_properties"]
    assert workspace.get_source(engine, source["id"])["settings_version"] == version + 2

    reordered = api.put(base, json={"filters": listed[::-1]}).json()["filters"]
    assert [f["action"] for f in reordered] == ["drop_properties", "drop"]
    assert api.put(base, json={"filters": [{"if": "((", "action": "drop"}]}).json()["position"] == 2
    assert api.delete(base + "/5").status_code == 404
    assert [f["action"] for f in api.delete(base + "/0").json()["filters"]] == ["drop"]
    snapshot = workspace.get_version(engine, source["id"], version + 4)["content"]
    assert snapshot["destinations"][0]["filters"] == [{"if": 'event = "Spam"', "action": "drop"}]
    assert api.delete(base).json() == {"filters": []}
    assert api.get("/api/v1/destinations/999999/filters").status_code == 404


def test_cloud_routing_honours_filters(engine, catalog):
    with Vendor() as vendor, Vendor() as other:
        _, (filtered, plain) = source_with(engine, hook(vendor.url + "/f"), hook(other.url + "/p"))
        filter_service.set_filters(engine, catalog, filtered["id"], [
            {"if": 'event = "Spam" or match(event, "Debug *")', "action": "drop"},
            {"if": 'type = "track" or type = "identify"', "action": "only"},
            {"if": "exists(properties.email)", "action": "drop_properties", "fields": ["properties.email", "context.ip"]},
        ], "test")
        sent = [
            make_event("track", event="Order Completed", properties={"total": 5, "email": "a@b.c"}),
            make_event("track", event="Spam"),
            make_event("track", event="Debug click"),
            make_event("page", name="Home"),
            make_event("identify", userId="u1", traits={"plan": "pro"}),
        ]
        append(engine, filtered["source_id"], sent)
        with RunningService(engine, catalog):
            got = vendor.wait_for(2)
            other.wait_for(5)
        bodies = sorted((r.json() for r in got), key=lambda b: b["type"])
        assert [b["messageId"] for b in bodies] == [sent[4]["messageId"], sent[0]["messageId"]]
        assert bodies[1]["properties"] == {"total": 5} and "ip" not in bodies[1]["context"]
        assert len(other.snapshot()) == 5  # the other destination is unfiltered
        assert {r.json().get("properties", {}).get("email") for r in other.snapshot()} >= {"a@b.c"}
    assert len(jobs(engine, filtered["id"])) == 2  # dropped events never became jobs


def _append_at(engine, source_id: int, when: datetime, items: list[dict]) -> None:
    assert all(events.append(engine, events.rows_for(source_id, when, items), dedupe_window=86400))


def test_replay_delivers_exactly_the_window_to_a_new_destination_once_per_event(engine, catalog, api):
    now = datetime.now(timezone.utc)
    with Vendor() as old, Vendor() as new:
        source, (existing,) = source_with(engine, hook(old.url + "/old"))
        early = [make_event("track", event=f"early {n}") for n in range(5)]
        window = [make_event("track", event=f"in {n}") for n in range(20)] + [make_event("page", name="P")]
        late = [make_event("track", event=f"late {n}") for n in range(5)]
        _append_at(engine, source["id"], now - timedelta(hours=3), early)
        _append_at(engine, source["id"], now - timedelta(hours=2), window)
        _append_at(engine, source["id"], now - timedelta(minutes=10), late)
        with RunningService(engine, catalog):
            old.wait_for(31)
            wait_until(lambda: all(j["status"] == store.DELIVERED for j in jobs(engine, existing["id"])))
            new_dest = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                                 settings={"url": new.url + "/new"})
            filter_service.set_filters(engine, catalog, new_dest["id"], [{"if": 'type = "page"', "action": "drop"}], "t")
            answer = api.post(f"/api/v1/destinations/{new_dest['id']}/replay", json={
                "since": (now - timedelta(hours=2, minutes=30)).isoformat(),
                "until": (now - timedelta(hours=1)).isoformat()})
            assert answer.status_code == 202, answer.text
            assert answer.json()["queued"] == 20  # the page is filtered out
            new.wait_for(20)
            wait_until(lambda: api.get(f"/api/v1/destinations/{new_dest['id']}/replays").json()["replays"][0]["delivered"] == 20,
                       what="replay progress")
            assert len(old.snapshot()) == 31  # nothing sent twice to the destination that had them
        got = [r.json()["messageId"] for r in new.snapshot()]
        assert sorted(got) == sorted(e["messageId"] for e in window[:20]) and len(set(got)) == len(got) == 20
        progress = api.get(f"/api/v1/destinations/{new_dest['id']}/replays").json()["replays"][0]
        assert progress["queued"] == progress["delivered"] == 20 and progress["pending"] == 0
        replayed = jobs(engine, new_dest["id"])
        # Latency counts from the replay's release, not the event's receipt two hours ago.
        assert all(j["latency_ms"] < 600_000 and j["replay_id"] == answer.json()["replay_id"] for j in replayed)


def test_replay_is_paced_and_validated(engine, catalog, api):
    source, (live,) = source_with(engine, hook("http://127.0.0.1:9/h"))
    _append_at(engine, source["id"], datetime.now(timezone.utc) - timedelta(minutes=5),
               [make_event("track", event=f"e{n}") for n in range(30)])
    # The fan-out has not run: those events get their jobs from it, not from a replay.
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    assert start_replay(engine, catalog, live["id"], since=since, until=None, rate=10, actor="t")["queued"] == 0
    store_cursor(engine)
    assert len(jobs(engine, live["id"])) == 30
    dest = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                     settings={"url": "http://127.0.0.1:9/new"})
    result = start_replay(engine, catalog, dest["id"], since=since, until=None, rate=10, actor="t")
    assert result["queued"] == 30
    due = sorted(j["next_attempt_at"] for j in jobs(engine, dest["id"]))
    assert (due[-1] - due[0]).total_seconds() == pytest.approx(2.9, abs=0.01)  # 10 a second
    second = start_replay(engine, catalog, dest["id"], since=since, until=None, types=["track"], rate=10, actor="t")
    assert second["queued"] == 0  # all still pending: not queued twice
    assert start_replay(engine, catalog, live["id"], since=since, until=None, rate=10, actor="t")["queued"] == 0
    url = f"/api/v1/destinations/{dest['id']}/replay"
    assert api.post(url, json={}).json()["field"] == "since"
    assert api.post(url, json={"since": "yesterday"}).json()["code"] == "invalid_time"
    assert api.post(url, json={"since": since.isoformat(), "types": ["click"]}).json()["field"] == "types"
    assert api.post(url, json={"since": since.isoformat(), "what": 1}).status_code == 422
    device = workspace.add_destination(engine, source["id"], slug="mixpanel", mode="device", enabled=True,
                                       settings={"token": "0" * 32})
    refused = api.post(f"/api/v1/destinations/{device['id']}/replay", json={"since": since.isoformat()})
    assert refused.status_code == 422 and refused.json()["code"] == "not_cloud_mode"
    assert api.post("/api/v1/destinations/999999/replay", json={"since": since.isoformat()}).status_code == 404
    assert [r["queued"] for r in replays.list_replays(engine, dest["id"])] == [0, 30]


def store_cursor(engine) -> None:
    """Move the fan-out cursor past every event, as a fan-out pass does."""
    from server.catalog import load_catalog
    from server.delivery.router import route
    from server.store import fanout

    catalog = load_catalog()
    fanout.ensure_cursor(engine)
    while fanout.fanout_pass(engine, lambda event, kind, dests: route(event, kind, True, dests, catalog),
                             fanout.GapTracker())[0]:
        pass


def test_switchboard_replay_history(engine, catalog, db_url, monkeypatch, capsys):
    from server.cli import main
    from server.store import governance

    source, (live,) = source_with(engine, hook("http://127.0.0.1:9/h"))
    _append_at(engine, source["id"], datetime.now(timezone.utc) - timedelta(minutes=30),
               [make_event("track", event="Kept"), make_event("page", name="Home")])
    store_cursor(engine)
    dest = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                     settings={"url": "http://127.0.0.1:9/new"})
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", db_url)
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    assert main(["replay", "--history", "--destination", str(dest["id"]), "--since", since, "--type", "track"]) == 0
    assert "queued 1 stored event(s)" in capsys.readouterr().out
    assert [j["event_type"] for j in jobs(engine, dest["id"])] == ["track"]
    assert main(["replay", "--history", "--destination", str(dest["id"])]) == 2
    assert "since is required" in capsys.readouterr().err
    assert main(["replay", "--destination", str(dest["id"]), "--type", "track"]) == 2
    (entry,) = governance.list_entries(engine)  # the refused commands recorded nothing
    assert (entry["action"], entry["actor"], entry["counts"]) == ("replay.history", "cli", {"queued": 1})

"""Dead letters, replay, stats and /metrics through the admin API and the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from starlette.testclient import TestClient

from delivery_flow import RunningService, all_finished, append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.app import create_app
from server.delivery import delivery_overview
from server.delivery.masking import masked
from server.cli import main
from server.store import delivery as store
from server.store import workspace

PLANES = ["server.health", "server.admin", "server.delivery"]


def picky(record):
    """Only /right exists; everything else is a permanent 404 with a body worth keeping."""
    if record.path == "/right":
        return 200, {}, b"thanks"
    return 404, {"Content-Type": "application/json"}, b'{"error":"no such hook"}'


@pytest.fixture
def api(config, engine, catalog, admin_token):
    app = create_app(dataclasses.replace(config, metrics_token="metrics-secret"), engine=engine, catalog=catalog,
                     planes=PLANES)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


def test_permanent_4xx_dead_letters_at_once_then_fixing_the_url_and_replaying_delivers(engine, catalog, api):
    with Vendor(picky) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/wrong",
                                                                               "shared_secret": "k3y-secret"}})
        sent = [make_event("track", event=f"E{i}", userId="u") for i in range(5)]
        append(engine, source["id"], sent)
        with RunningService(engine, catalog):
            wait_until(lambda: all_finished(engine, dest["id"], 5, store.DEAD), what="dead letters")
            assert len(vendor.snapshot()) == 5  # one attempt each: a 404 is not retried

            listing = api.get(f"/api/v1/destinations/{dest['id']}/dead-letters").json()
            assert listing["total"] == 5
            assert sorted(d["message_id"] for d in listing["dead_letters"]) == sorted(e["messageId"] for e in sent)
            first = listing["dead_letters"][0]
            assert first["last_status"] == 404 and first["attempts"] == 1

            detail = api.get(f"/api/v1/destinations/{dest['id']}/dead-letters/{first['id']}").json()
            assert detail["event"]["messageId"] == first["message_id"]
            assert detail["request"]["method"] == "POST" and detail["request"]["url"].endswith("/wrong")
            assert detail["request"]["headers"]["X-Signature"]  # kept, the secret itself is not
            assert "k3y-secret" not in str(detail)
            assert detail["response"] == {"status": 404, "body": '{"error":"no such hook"}'}
            assert [a["outcome"] for a in detail["attempts_log"]] == ["dead"]

            stats = api.get(f"/api/v1/destinations/{dest['id']}/stats").json()
            assert (stats["dead"], stats["delivered"]) == (5, 0)
            assert stats["last_error"]["status"] == 404

            # Fix the setting, then replay: re-translated with the current URL.
            workspace.update_destination(engine, dest["id"], settings={"url": vendor.url + "/right",
                                                                       "shared_secret": "k3y-secret"})
            answer = api.post(f"/api/v1/destinations/{dest['id']}/dead-letters/replay", json={})
            assert answer.status_code == 200 and answer.json() == {"replayed": 5}
            wait_until(lambda: all_finished(engine, dest["id"], 5), what="replayed deliveries")
        right = [r.json()["messageId"] for r in vendor.snapshot() if r.path == "/right"]
    assert sorted(right) == sorted(e["messageId"] for e in sent)
    stats = api.get(f"/api/v1/destinations/{dest['id']}/stats").json()
    assert (stats["delivered"], stats["dead"], stats["retrying"]) == (5, 0, 0)
    assert stats["latency_ms"]["p50"] is not None and stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"]
    points = stats["series"]["points"]
    assert len(points) == 24 and sum(p["delivered"] for p in points) == 5 and sum(p["dead"] for p in points) == 5
    assert api.get(f"/api/v1/destinations/{dest['id']}/dead-letters").json()["total"] == 0


def test_replay_by_time_range_and_the_cli(engine, catalog, api, monkeypatch, capsys, db_url):
    with Vendor(picky) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/wrong"}})
        append(engine, source["id"], [make_event("track", event="old")])
        with RunningService(engine, catalog):
            wait_until(lambda: all_finished(engine, dest["id"], 1, store.DEAD), what="first dead letter")
            cut = datetime.now(timezone.utc)
            append(engine, source["id"], [make_event("track", event="new")])
            wait_until(lambda: all_finished(engine, dest["id"], 2, store.DEAD), what="second dead letter")
            listing = api.get(f"/api/v1/destinations/{dest['id']}/dead-letters",
                              params={"since": cut.isoformat()}).json()
            assert [d["type"] for d in listing["dead_letters"]] == ["track"] and listing["total"] == 1

            workspace.update_destination(engine, dest["id"], settings={"url": vendor.url + "/right"})
            monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", db_url)
            assert main(["replay", "--destination", str(dest["id"]), "--until", cut.isoformat()]) == 0
            assert "queued 1 dead letter(s)" in capsys.readouterr().out
            wait_until(lambda: len([r for r in vendor.snapshot() if r.path == "/right"]) == 1, what="replay")
        statuses = sorted(j["status"] for j in jobs(engine, dest["id"]))
    assert statuses == [store.DEAD, store.DELIVERED]
    [delivered] = [r for r in vendor.snapshot() if r.path == "/right"]
    assert delivered.json()["event"] == "old"


def test_bad_requests_get_clear_errors(api, engine, monkeypatch, capsys, db_url):
    source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/x"}})
    base = f"/api/v1/destinations/{dest['id']}"
    for response, code in [
        (api.get(base + "/dead-letters", params={"since": "yesterday"}), "invalid_time"),
        (api.get(base + "/dead-letters", params={"limit": "0"}), "invalid_number"),
        (api.post(base + "/dead-letters/replay", content=b"{nope"), "malformed_json"),
        (api.post(base + "/dead-letters/replay", json={"ids": ["x"]}), "invalid_ids"),
        (api.get("/api/v1/destinations/999999/stats"), "not_found"),
        (api.get(base + "/dead-letters/424242"), "not_found"),
    ]:
        assert response.status_code in (400, 404) and response.json()["code"] == code
    unauthenticated = TestClient(api.app, raise_server_exceptions=False)
    for path in (base + "/stats", base + "/dead-letters"):
        assert unauthenticated.get(path).status_code == 401
    assert unauthenticated.post(base + "/dead-letters/replay").status_code == 401
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", db_url)
    for argv in (["replay", "--destination", "999999"], ["replay", "--destination", str(dest["id"]), "--since", "soon"]):
        assert main(argv) == 2  # one line on stderr, exit status 2 (as every command's CliError)
    err = capsys.readouterr().err
    assert "no destination 999999" in err and "ISO 8601" in err


def test_metrics_need_the_metrics_token_or_an_admin_token(engine, catalog, api, admin_token):
    with Vendor() as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        append(engine, source["id"], [make_event("track", event=f"E{i}") for i in range(3)])
        with RunningService(engine, catalog):
            wait_until(lambda: all_finished(engine, dest["id"], 3), what="deliveries")
    anonymous = TestClient(api.app, raise_server_exceptions=False)
    denied = anonymous.get("/metrics")
    assert denied.status_code == 401 and denied.json()["code"] == "unauthorized"
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    for token in ("metrics-secret", admin_token):
        answer = anonymous.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        text = answer.text
        assert f'switchboard_delivery_jobs_total{{destination_id="{dest["id"]}",slug="webhooks",status="delivered"}} 3.0' in text
        assert f'switchboard_delivery_latency_seconds{{destination_id="{dest["id"]}",quantile="0.99",slug="webhooks"}}' in text or \
            f'switchboard_delivery_latency_seconds{{destination_id="{dest["id"]}",slug="webhooks",quantile="0.99"}}' in text


def test_old_finished_deliveries_are_pruned_but_dead_letters_stay(engine, catalog):
    with Vendor(picky) as vendor:
        source, (good, bad) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/right"}},
                                          {"slug": "webhooks", "settings": {"url": vendor.url + "/wrong"}})
        append(engine, source["id"], [make_event("track", event="E")])
        with RunningService(engine, catalog):
            wait_until(lambda: all_finished(engine, good["id"], 1) and all_finished(engine, bad["id"], 1, store.DEAD),
                       what="one delivered, one dead")
    assert store.prune(engine, datetime.now(timezone.utc) - timedelta(days=7)) == 0
    assert store.prune(engine, datetime.now(timezone.utc) + timedelta(seconds=1)) == 1
    assert jobs(engine, good["id"]) == []
    [dead] = jobs(engine, bad["id"])
    assert len(store.get_job(engine, dead["id"])["attempts_log"]) == 1


def echo_headers(record):
    """A vendor whose error page quotes the request's headers back (some do)."""
    return 400, {"Content-Type": "application/json"}, orjson.dumps({"your_headers": record.headers})


def test_secret_headers_a_vendor_echoes_back_are_masked_where_they_are_kept_and_shown(engine, catalog, api):
    with Vendor(echo_headers) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {
            "url": vendor.url + "/hook", "shared_secret": "k3y-secret",
            "headers": {"X-Api-Key": "ECHOHDRKEY7", "Authorization": "Token ECHOAUTHTOK8"}}})
        append(engine, source["id"], [make_event("track", event="E", userId="u")])
        with RunningService(engine, catalog):
            wait_until(lambda: all_finished(engine, dest["id"], 1, store.DEAD), what="a dead letter")
        assert "ECHOHDRKEY7" in vendor.snapshot()[0].headers.values()  # it was sent, and echoed
    (job,) = api.get(f"/api/v1/destinations/{dest['id']}/dead-letters").json()["dead_letters"]
    shown = {
        "stored": store.get_job(engine, job["id"])["attempts_log"],
        "detail": api.get(f"/api/v1/destinations/{dest['id']}/dead-letters/{job['id']}").json(),
        "stats": api.get(f"/api/v1/destinations/{dest['id']}/stats").json(),
        "page": asyncio.run(delivery_overview(api.app, workspace.get_destination(engine, dest["id"]))),
    }
    for where, value in shown.items():
        text = str(value)
        assert "your_headers" in text, where  # the answer is there to read...
        assert not {"ECHOHDRKEY7", "ECHOAUTHTOK8", "k3y-secret"} & set(re.findall(r"[\w-]+", text)), where
    assert shown["detail"]["response"]["status"] == 400 and "********" in shown["detail"]["response"]["body"]
    assert shown["stats"]["last_error"]["response"] == shown["detail"]["response"]["body"]


def test_masking_replaces_secrets_inside_texts_and_leaves_numbers_alone(catalog):
    dest = {"settings": {"url": "https://v.example/2024", "shared_secret": "2024"}}
    shown = masked({"count": 2024, "latency_ms": 12.5, "body": "key=2024;", "list": ["x2024"]}, catalog.get("webhooks"),
                   dest)
    assert shown == {"count": 2024, "latency_ms": 12.5, "body": "key=********;", "list": ["x********"]}

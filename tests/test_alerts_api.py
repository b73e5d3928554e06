"""The alerts REST API (/api/v1/alerts) over HTTP on SQLite and PostgreSQL: create, list, get,
patch, delete, history, validation errors with their field, 404s, auth, and the OpenAPI document."""

from __future__ import annotations

import asyncio

import pytest
from starlette.testclient import TestClient

from server.alerts.evaluator import Evaluator
from server.app import create_app
from server.config import Config
from server.store import tokens
from tests.alerts_support import attempts, workspace_with
from tests.test_admin_api import assert_error

API = "/api/v1/alerts"


@pytest.fixture
def alerts_client(config, engine, catalog):
    app = create_app(config, engine=engine, catalog=catalog, planes=["server.admin", "server.alerts"])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {tokens.create_token(engine, 't')}"
        yield client


@pytest.fixture
def ws(engine):
    return workspace_with(engine, "http://127.0.0.1:9/unused")


def body(ws, **overrides):
    return {"name": "Vendor failing", "kind": "failure_rate", "destination_id": ws["watched"]["id"],
            "threshold": 20, "window_minutes": 5, "notify": {"destination_id": ws["channel"]["id"]}, **overrides}


def test_create_list_get_patch_delete(alerts_client, ws):
    created = alerts_client.post(API, json=body(ws))
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["state"] == "ok" and rule["enabled"] is True and rule["window_minutes"] == 5
    assert alerts_client.get(API).json()["alerts"] == [rule]
    assert alerts_client.get(f"{API}/{rule['id']}").json() == rule
    patched = alerts_client.patch(f"{API}/{rule['id']}", json={"threshold": 35.5, "enabled": False})
    assert patched.status_code == 200 and patched.json()["threshold"] == 35.5 and patched.json()["enabled"] is False
    assert alerts_client.get(f"{API}/{rule['id']}/history").json() == {"history": []}
    assert alerts_client.delete(f"{API}/{rule['id']}").status_code == 204
    assert_error(alerts_client.get(f"{API}/{rule['id']}"), 404, "not_found")
    assert_error(alerts_client.delete(f"{API}/{rule['id']}"), 404, "not_found")
    assert_error(alerts_client.get(f"{API}/{rule['id']}/history"), 404, "not_found")
    assert_error(alerts_client.patch(f"{API}/{rule['id']}", json={}), 404, "not_found")


def test_every_kind_and_channel(alerts_client, ws):
    for extra in ({"kind": "dead_letters", "threshold": 0}, {"kind": "delivery_lag", "threshold": 300},
                  {"kind": "no_events", "source_id": ws["source"]["id"], "destination_id": None},
                  {"notify": {"email": ["ops@example.com"]}}):
        response = alerts_client.post(API, json=body(ws, **extra))
        assert response.status_code == 201, (extra, response.text)
    assert [r["kind"] for r in alerts_client.get(API).json()["alerts"]] == [
        "dead_letters", "delivery_lag", "no_events", "failure_rate"]


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "name"),
    ({"kind": "cpu"}, "kind"),
    ({"destination_id": 999}, "destination_id"),
    ({"destination_id": "1"}, "destination_id"),
    ({"threshold": 101}, "threshold"),
    ({"threshold": True}, "threshold"),
    ({"window_minutes": 0}, "window_minutes"),
    ({"window_minutes": None}, "window_minutes"),
    ({"notify": {}}, "notify"),
    ({"notify": {"email": ["not an address"]}}, "notify"),
    ({"notify": {"destination_id": 999}}, "notify"),
    ({"enabled": "yes"}, "enabled"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_rules_name_their_field(alerts_client, ws, change, field):
    assert_error(alerts_client.post(API, json=body(ws, **change)), 422, "validation_error", field)


def test_only_slack_or_webhooks_destinations_notify(alerts_client, ws, engine):
    from server.store import workspace

    mixpanel = workspace.add_destination(engine, ws["source"]["id"], slug="mixpanel", mode="cloud", enabled=False,
                                         settings={"token": "t"})
    assert_error(alerts_client.post(API, json=body(ws, notify={"destination_id": mixpanel["id"]})),
                 422, "validation_error", "notify")
    rule = alerts_client.post(API, json=body(ws)).json()
    assert_error(alerts_client.patch(f"{API}/{rule['id']}", json={"kind": "no_events"}), 422, "validation_error",
                 "source_id")


def test_malformed_bodies_and_limits(alerts_client, ws):
    assert_error(alerts_client.post(API, content=b"[1]", headers={"Content-Type": "application/json"}), 400)
    rule = alerts_client.post(API, json=body(ws)).json()
    assert_error(alerts_client.get(f"{API}/{rule['id']}/history?limit=0"), 400, "invalid_limit", "limit")


def test_without_a_token_every_route_is_401(alerts_client, ws):
    alerts_client.headers.pop("Authorization")
    for method, path in [("GET", API), ("POST", API), ("GET", f"{API}/1"), ("PATCH", f"{API}/1"),
                         ("DELETE", f"{API}/1"), ("GET", f"{API}/1/history")]:
        assert_error(alerts_client.request(method, path), 401, "unauthorized")


def test_history_shows_firings_with_their_notification(alerts_client, ws, engine, catalog, db_url):
    rule = alerts_client.post(API, json=body(ws)).json()
    attempts(engine, ws["watched"]["id"], ["dead"])
    config = Config(database_url=db_url, allow_private_egress=True)
    assert len(asyncio.run(Evaluator(engine, catalog, config).run_once())) == 1
    assert alerts_client.get(f"{API}/{rule['id']}").json()["state"] == "firing"
    [event] = alerts_client.get(f"{API}/{rule['id']}/history").json()["history"]
    assert event["kind"] == "firing" and event["notify_status"] == "failed"  # port 9 answers nothing
    assert "100% of 1 delivery attempts" in event["message"]


def test_openapi_lists_the_alert_routes(config, engine, catalog):
    app = create_app(config, engine=engine, catalog=catalog)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {tokens.create_token(engine, 't')}"
        paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert set(paths["/api/v1/alerts"]) == {"get", "post"}
    assert set(paths["/api/v1/alerts/{id}"]) == {"get", "patch", "delete"}
    assert "get" in paths["/api/v1/alerts/{id}/history"]


def test_the_evaluator_runs_only_where_delivery_workers_run(engine, catalog, db_url):
    for workers in (False, True):
        config = Config(database_url=db_url, delivery_workers=workers, allow_private_egress=True)
        app = create_app(config, engine=engine, catalog=catalog, planes=["server.alerts"])
        with TestClient(app):
            assert (app.state.alert_evaluator is not None) is workers
        assert app.state.alert_evaluator is None  # stopped on shutdown


def test_deleting_what_rules_watch_deletes_them_and_deleting_their_channel_switches_them_off(alerts_client, ws,
                                                                                              engine, catalog,
                                                                                              db_url):
    from server.store import audit, workspace

    watching = alerts_client.post(API, json=body(ws)).json()
    other = workspace.create_source(engine, "Other")
    elsewhere = workspace.add_destination(engine, other["id"], slug="webhooks", mode="cloud", enabled=True,
                                          settings={"url": "https://vendor.example/other"})
    through_channel = alerts_client.post(API, json=body(ws, destination_id=elsewhere["id"])).json()

    assert alerts_client.delete(f"/api/v1/destinations/{ws['watched']['id']}").status_code == 204
    assert_error(alerts_client.get(f"{API}/{watching['id']}"), 404, "not_found")
    attempts(engine, ws["watched"]["id"], ["dead"] * 5)  # the deleted destination's old records
    config = Config(database_url=db_url, allow_private_egress=True)
    assert asyncio.run(Evaluator(engine, catalog, config).run_once()) == []  # nothing fires about it

    quiet_source = alerts_client.post(API, json=body(ws, kind="no_events", source_id=ws["source"]["id"],
                                                     destination_id=None)).json()
    assert alerts_client.delete(f"/api/v1/sources/{ws['source']['id']}").status_code == 204  # and the channel
    assert_error(alerts_client.get(f"{API}/{quiet_source['id']}"), 404, "not_found")
    kept = alerts_client.get(f"{API}/{through_channel['id']}").json()
    assert kept["enabled"] is False and kept["destination_id"] == elsewhere["id"]
    # Pointed at another channel, it can be switched on again.
    alerts_client.patch(f"{API}/{through_channel['id']}", json={"notify": {"email": ["ops@example.com"]},
                                                               "enabled": True}).raise_for_status()

    entries = {(e["subject"], e["action"]): e for e in audit.list_entries(engine, action="alert")}
    assert entries[(f"alert:{watching['id']}", "alert.delete")]["actor"] == "token:t"
    assert entries[(f"alert:{quiet_source['id']}", "alert.delete")]["changes"]["summary"] == \
        "Deleted 'Vendor failing' with what it watched"
    switched_off = [e for e in audit.list_entries(engine, action="alert.update")
                    if e["changes"].get("enabled") == {"before": True, "after": False}]
    assert [e["subject"] for e in switched_off] == [f"alert:{through_channel['id']}"]


def test_a_rollback_to_before_a_destination_existed_deletes_the_rules_that_watch_it(alerts_client, ws, engine):
    from server.store import workspace

    rule = alerts_client.post(API, json=body(ws)).json()
    workspace.rollback(engine, ws["source"]["id"], 1)  # version 1: the source without destinations
    assert_error(alerts_client.get(f"{API}/{rule['id']}"), 404, "not_found")

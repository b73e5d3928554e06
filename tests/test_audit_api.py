"""``GET /api/v1/audit`` over the real app and database: each kind of change made through the
admin API is one entry with the right actor, action and origin (client address and user agent);
a secret setting's value appears nowhere in the answer; filters, paging and bad parameters; the
OpenAPI document declares the endpoint and its query parameters; the CLI's changes say "cli"."""

from __future__ import annotations

from typing import Iterator

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.cli import main
from server.store import audit

SECRET = "very-secret-shared-value-42"


@pytest.fixture
def api(config, engine, catalog, admin_token) -> Iterator[TestClient]:
    app = create_app(config, engine=engine, catalog=catalog,
                     planes=["server.admin", "server.privacy", "server.delivery"])
    with TestClient(app, raise_server_exceptions=True) as client:
        client.headers.update({"Authorization": f"Bearer {admin_token}", "User-Agent": "audit-test/1.0"})
        yield client


def _audit(api, **params) -> list[dict]:
    response = api.get("/api/v1/audit", params=params)
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def test_every_kind_of_api_change_is_one_entry_with_actor_and_origin(api):
    source = api.post("/api/v1/sources", json={"name": "Site"}).json()
    dest = api.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "webhooks", "mode": "cloud", "settings": {"url": "https://a.example/in", "shared_secret": SECRET}}).json()
    assert api.patch(f"/api/v1/destinations/{dest['id']}", json={"settings": {"batch_size": 5}}).status_code == 200
    assert api.patch(f"/api/v1/destinations/{dest['id']}", json={"enabled": True}).status_code == 200
    assert api.post(f"/api/v1/destinations/{dest['id']}/filters", json={"if": 'event = "Spam"', "action": "drop"}).status_code == 201
    assert api.post(f"/api/v1/destinations/{dest['id']}/dead-letters/replay", json={}).status_code == 200
    assert api.post("/api/v1/regulations", json={"type": "suppress", "user_ids": ["ada"]}).status_code == 201
    assert api.post("/api/v1/tokens", json={"name": "ci"}).status_code == 201
    assert api.post(f"/api/v1/sources/{source['id']}/rotate-write-key").status_code == 200
    assert api.delete(f"/api/v1/destinations/{dest['id']}").status_code == 204

    rows = list(reversed(_audit(api)))
    assert [r["action"] for r in rows] == [
        "source.create", "destination.create", "destination.update", "destination.update", "filters.added",
        "replay.dead_letters", "regulation", "token.create", "source.rotate_write_key", "destination.delete"]
    assert {r["actor"] for r in rows} == {"token:test"}  # the token's name (docs/admin-api.md#roles)
    assert {(r["origin"]["address"], r["origin"]["user_agent"]) for r in rows} == {("testclient", "audit-test/1.0")}
    assert rows[2]["changes"]["settings.batch_size"] == {"before": None, "after": 5}
    assert rows[3]["changes"]["enabled"] == {"before": False, "after": True}
    assert rows[4]["subject"] == f"destination:{dest['id']}" and rows[4]["changes"]["filters"][0]["action"] == "drop"
    assert rows[7]["subject"] == "token:ci"
    whole = api.get("/api/v1/audit").text
    assert SECRET not in whole and source["write_key"] not in whole
    assert '"settings.shared_secret":{"before":null,"after":"********"}' in whole.replace(" ", "")


def test_filters_paging_and_bad_parameters(api):
    for n in range(5):
        api.post("/api/v1/sources", json={"name": f"S{n}"})
    api.post("/api/v1/tokens", json={"name": "ci"})
    assert len(_audit(api, action="source")) == 5 and len(_audit(api, action="token.create")) == 1
    assert len(_audit(api, subject="token")) == 1 and len(_audit(api, actor="token:test")) == 6
    assert _audit(api, actor="someone-else") == []
    assert len(_audit(api, since="2000-01-01")) == 6 and _audit(api, until="2000-01-01T00:00:00Z") == []
    page = api.get("/api/v1/audit", params={"limit": 4}).json()
    rest = api.get("/api/v1/audit", params={"limit": 4, "before": page["next_before"]}).json()
    assert len(page["entries"]) == 4 and len(rest["entries"]) == 2 and rest["next_before"] is None
    assert {r["id"] for r in page["entries"]}.isdisjoint(r["id"] for r in rest["entries"])
    for params in ({"limit": "0"}, {"limit": "x"}, {"before": "-3"}, {"since": "yesterday"}, {"until": "2026-13-01"}):
        bad = api.get("/api/v1/audit", params=params)
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter", params
    assert api.get("/api/v1/audit", headers={"Authorization": ""}).status_code == 401


def test_the_openapi_document_declares_the_audit_and_its_filters(api):
    operation = api.get("/api/v1/openapi.json").json()["paths"]["/api/v1/audit"]["get"]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {
        "actor", "action", "subject", "since", "until", "before", "limit"}


def test_cli_changes_are_recorded_as_from_the_cli(engine, db_url, monkeypatch, capsys):
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", db_url)
    assert main(["sources", "create", "Shop"]) == 0
    assert main(["tokens", "create", "--name", "deploy"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    rows = audit.list_entries(engine)
    assert [(r["action"], r["actor"], r["origin"]["user_agent"]) for r in rows] == [
        ("token.create", "cli", "cli"), ("source.create", "cli", "cli")]
    assert token not in repr(rows)
    assert audit.origin.get() is None  # the command's origin does not outlive it

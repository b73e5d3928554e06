"""The warehouse's PostgreSQL connection obeys the egress rules when it connects, not only when
its URL is saved (server/warehouse/egress.py): a name that now resolves inside, a Unix socket, a
connection service or an internal literal is refused before anything connects, and the failed
sync says why. Names "resolve" through a stub: nothing here sends DNS queries or connects."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict
from starlette.testclient import TestClient
from test_warehouse_support import build_warehouse, make_event

from server.app import create_app
from server.config import Config
from server.store import tokens, workspace
from server.warehouse.egress import WarehouseEgressRefused, checked_params
from server.warehouse.loader import PostgresTarget

PUBLIC = "93.184.216.34"


def stub(answers: dict[str, list[str]]):
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def test_a_public_name_connects_to_the_checked_address_only():
    resolver = stub({"wh.example.com": [PUBLIC, "2606:2800:220:1::1"]})
    params = checked_params(conninfo_to_dict("postgresql://u:pw@wh.example.com:6543/analytics"), resolver)
    # libpq gets the address we checked and will not resolve the name again (it keeps it for TLS).
    assert params["hostaddr"] == PUBLIC and params["host"] == "wh.example.com" and params["dbname"] == "analytics"
    assert resolver.asked == [("wh.example.com", 6543)]


@pytest.mark.parametrize("answers", [["127.0.0.1"], [PUBLIC, "10.1.2.3"], ["169.254.169.254"], ["::ffff:127.0.0.1"]])
def test_a_name_that_resolves_inside_is_refused_dns_rebinding(answers):
    with pytest.raises(WarehouseEgressRefused, match="resolves to .* an internal address"):
        checked_params(conninfo_to_dict("postgresql://u@rebind.example.com/db"), stub({"rebind.example.com": answers}))


@pytest.mark.parametrize("url, why", [
    ("postgresql://u@localhost/db", "internal address"),
    ("postgresql://u@2130706433/db", "internal address"),  # 127.0.0.1 in decimal
    ("postgresql://u@[::1]/db", "internal address"),
    ("postgresql://u@10.0.0.5/db", "internal address"),
    ("postgresql:///db?host=/var/run/postgresql", "local socket"),
    ("postgresql:///db", "local PostgreSQL socket"),
    ("postgresql://u@wh.example.com/db?service=prod", "service"),
    ("postgresql://u@wh.example.com/db?hostaddr=10.9.8.7", "internal address"),
    ("postgresql://u@wh.example.com,10.0.0.9/db", "internal address"),
])
def test_internal_targets_in_every_spelling_are_refused(url, why):
    resolver = stub({"wh.example.com": [PUBLIC]})
    with pytest.raises(WarehouseEgressRefused, match=why):
        checked_params(conninfo_to_dict(url), resolver)


def test_the_target_refuses_before_connecting():
    resolver = stub({"wh.example.com": ["127.0.0.1"]})
    with pytest.raises(WarehouseEgressRefused):
        PostgresTarget("postgresql://u:pw@wh.example.com/db", "s", 1, allow_private_egress=False, resolver=resolver)


def test_a_sync_to_an_internal_warehouse_fails_with_the_reason_and_without_the_secret(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    # Saved directly in the store, as a row from before the rule existed would be.
    workspace.update_destination(wh.engine, wh.destination["id"], settings={
        "target": "postgresql", "database_url": "postgresql://loader:s3cret-pw@localhost:5432/analytics"})
    wh.emit(make_event("page"))
    app = create_app(Config(database_url=wh.config.database_url, delivery_workers=False, allow_private_egress=False),
                     engine=wh.engine, catalog=wh.catalog, planes=["server.health", "server.admin", "server.warehouse"])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {tokens.create_token(wh.engine, 'test')}"
        sync = client.post(f"/api/v1/destinations/{wh.destination['id']}/sync").json()["sync"]
    assert sync["status"] == "failed"
    assert "refused by the egress rules" in sync["error"] and "SWITCHBOARD_ALLOW_PRIVATE_EGRESS" in sync["error"]
    assert "s3cret-pw" not in sync["error"]

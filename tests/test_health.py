"""/healthz and /readyz: no token needed, no secrets, 503 with code and message when the
database cannot be reached."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from pgserver import free_port
from server.app import create_app
from server.config import Config
from server.store.engine import make_engine


def test_health_and_readiness_need_no_token(app, engine):
    with TestClient(app) as client:  # no Authorization header
        live = client.get("/healthz")
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "database": engine.dialect.name}


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://switchboard:hunter2@127.0.0.1:{port}/switchboard",
    "sqlite:////nonexistent-dir/{port}/switchboard.db",
])
def test_readyz_answers_503_when_the_database_is_unreachable(catalog, url):
    url = url.format(port=free_port())  # nothing listens there
    engine = make_engine(url)
    app = create_app(Config(database_url=url, delivery_workers=False), engine=engine, catalog=catalog,
                     planes=["server.health"])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200  # the process itself is fine
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["code"] and body["message"]
    assert "hunter2" not in response.text and "switchboard:" not in response.text
    engine.dispose()

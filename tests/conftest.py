"""Shared fixtures: databases (SQLite and a real PostgreSQL the session starts), the smallest
app for a test, an admin token, and a real uvicorn server for tests that need sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgserver import PostgresServer, free_port, postgres_server, wait_for_port  # noqa: E402

from server.app import create_app  # noqa: E402
from server.catalog import load_catalog  # noqa: E402
from server.config import Config  # noqa: E402
from server.store import open_store, tokens  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Every server a test talks to is on 127.0.0.1. A proxy set in the developer's or CI's shell
# (HTTP_PROXY and friends, which delivery honours like curl does) would route those requests
# through it: the suite must not depend on the machine's proxy settings.
for _name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
    os.environ.pop(_name, None)
    os.environ.pop(_name.upper(), None)
# ... and every receiver is on 127.0.0.1, which the egress rules refuse by default: allow it for
# every server and CLI the suite starts (tests of the rules themselves turn it off again).
os.environ["SWITCHBOARD_ALLOW_PRIVATE_EGRESS"] = "true"


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: once on SQLite, once on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg").create_database()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def engine(db_url):
    engine = open_store(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def config(db_url) -> Config:
    return Config(database_url=db_url, delivery_workers=False, allow_private_egress=True)


@pytest.fixture
def app(config, engine, catalog):
    """The admin plane on a fresh database (planes that need more build their own app)."""
    return create_app(config, engine=engine, catalog=catalog, planes=["server.health", "server.admin"])


@pytest.fixture
def admin_token(engine) -> str:
    return tokens.create_token(engine, "test")


@pytest.fixture
def client(app, admin_token) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {admin_token}"
        yield c


class LiveServer:
    """``switchboard serve`` in a subprocess on a free port, with its own environment.
    ``serving`` maps each running server's database URL to it (e2e helpers that write the store
    directly use it to wait until the server has seen their change)."""

    serving: dict[str, "LiveServer"] = {}

    def __init__(self, database_url: str, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SWITCHBOARD_DATABASE_URL": database_url,
            "SWITCHBOARD_HOST": "127.0.0.1",
            "SWITCHBOARD_PORT": str(self.port),
            "SWITCHBOARD_LOG_LEVEL": "WARNING",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def spawn(self) -> subprocess.Popen:
        """Start the process (subclasses add arguments or keep its output)."""
        return subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=self.env, cwd=ROOT)

    def start(self) -> "LiveServer":
        self.process = self.spawn()
        try:
            wait_for_port(self.port, 30)
        except TimeoutError:
            self.stop()
            raise
        LiveServer.serving[self.env["SWITCHBOARD_DATABASE_URL"]] = self
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if LiveServer.serving.get(self.env["SWITCHBOARD_DATABASE_URL"]) is self:
            del LiveServer.serving[self.env["SWITCHBOARD_DATABASE_URL"]]
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def live_server_factory(tmp_path):
    started: list[LiveServer] = []

    def start(database_url: str | None = None, **env: str) -> LiveServer:
        server = LiveServer(database_url or f"sqlite:///{tmp_path / 'live.db'}", **env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()

"""``switchboard users`` and ``switchboard tokens`` (server/admin/commands.py), run as the real
command in a subprocess against a SQLite file: add/list/set-password/remove, the last owner,
tokens with a role that the API then honours, and revoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from server.api.users import check_password
from server.app import create_app
from server.config import Config
from server.store import open_store
from server.store import web as web_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_LOG_LEVEL": "WARNING"}

    def run(*args: str, stdin: str = "", expect: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT, input=stdin,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == expect, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done

    run.url = url
    return run


def test_users_add_list_set_password_remove(cli):
    cli("users", "add", "root", "--role", "owner", "--password-stdin", stdin="first password\n")
    shown = cli("users", "add", "vic").stdout  # a generated password, printed once
    assert "vic (viewer) created; password: " in shown
    generated = shown.split("password: ")[1].split()[0]
    listed = json.loads(cli("users", "list", "--json").stdout)
    assert [(u["username"], u["role"]) for u in listed] == [("root", "owner"), ("vic", "viewer")]
    assert "scrypt" not in cli("users", "list").stdout and "first password" not in json.dumps(listed)

    engine = open_store(cli.url)
    try:
        assert check_password(generated, web_store.get_user(engine, "vic")["password_hash"])
        cli("users", "set-password", "root", "--password-stdin", stdin="the reset one\n")
        assert check_password("the reset one", web_store.get_user(engine, "root")["password_hash"])
    finally:
        engine.dispose()

    assert "only owner" in cli("users", "remove", "root", expect=2).stderr
    assert "only owner" in cli("users", "set-role", "root", "editor", expect=2).stderr
    assert "at least 8" in cli("users", "add", "short", "--password-stdin", stdin="1234\n", expect=2).stderr
    assert "exists" in cli("users", "add", "vic", expect=2).stderr
    cli("users", "remove", "vic")
    assert "No user" in cli("users", "set-password", "vic", expect=2).stderr
    assert [u["username"] for u in json.loads(cli("users", "list", "--json").stdout)] == ["root"]


def test_tokens_create_with_a_role_list_and_revoke(cli, catalog):
    viewer = cli("tokens", "create", "--name", "dash", "--role", "viewer").stdout.strip()
    owner = cli("tokens", "create", "--name", "ops").stdout.strip()  # default: owner
    listed = json.loads(cli("tokens", "list", "--json").stdout)
    assert [(t["name"], t["role"]) for t in listed] == [("dash", "viewer"), ("ops", "owner")]
    assert viewer not in json.dumps(listed)
    engine = open_store(cli.url)
    try:
        app = create_app(Config(database_url=cli.url, delivery_workers=False), engine=engine, catalog=catalog,
                         planes=["server.admin"])
        with TestClient(app, raise_server_exceptions=False) as client:
            as_viewer = {"Authorization": f"Bearer {viewer}"}
            assert client.get("/api/v1/sources", headers=as_viewer).status_code == 200
            assert client.post("/api/v1/sources", json={"name": "x"}, headers=as_viewer).status_code == 403
            assert client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {owner}"}).status_code == 200
            cli("tokens", "revoke", str(listed[0]["id"]))
            assert client.get("/api/v1/sources", headers=as_viewer).status_code == 401
    finally:
        engine.dispose()
    assert "No token" in cli("tokens", "revoke", "999", expect=2).stderr
    assert "invalid choice" in cli("tokens", "create", "--role", "admin", expect=2).stderr

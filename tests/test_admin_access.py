"""Users and scoped tokens over the admin API (server/admin/access.py, server/api/users.py): no
password or token hash is ever returned, the last owner stays, a revoked token answers 401 at once
on a second app sharing the store, and last_used is recorded."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.config import Config
from server.store import open_store, tokens
from server.store import web as web_store

API = "/api/v1"


def test_users_crud_never_returns_a_password(client, engine):
    created = client.post(f"{API}/users", json={"username": "ada", "password": "correct horse", "role": "editor"})
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "ada" and created.json()["role"] == "editor"
    for response in (created, client.get(f"{API}/users"), client.get(f"{API}/users/ada")):
        assert "password" not in response.text and "scrypt" not in response.text
    assert [u["username"] for u in client.get(f"{API}/users").json()["users"]] == ["ada"]
    assert client.post(f"{API}/users", json={"username": "ada", "password": "another one"}).json()["code"] == \
        "username_taken"
    viewer = client.post(f"{API}/users", json={"username": "bo", "password": "12345678"}).json()
    assert viewer["role"] == "viewer"  # the default: least rights
    for body, field in (({"username": "x", "password": "short"}, "password"),
                        ({"username": "a b", "password": "long enough"}, "username"),
                        ({"username": "cy", "password": "long enough", "role": "admin"}, "role")):
        response = client.post(f"{API}/users", json=body)
        assert response.status_code == 422 and response.json()["field"] == field

    patched = client.patch(f"{API}/users/ada", json={"role": "owner", "password": "a new password"})
    assert patched.status_code == 200 and patched.json()["role"] == "owner"
    from server.api.users import check_password
    assert check_password("a new password", web_store.get_user(engine, "ada")["password_hash"])
    assert client.patch(f"{API}/users/ada", json={"username": "eve"}).status_code == 422
    assert client.patch(f"{API}/users/nobody", json={"role": "viewer"}).json()["code"] == "not_found"
    assert client.delete(f"{API}/users/bo").status_code == 204
    assert client.delete(f"{API}/users/bo").json()["code"] == "not_found"


def test_the_last_owner_cannot_be_deleted_or_demoted(client):
    client.post(f"{API}/users", json={"username": "root", "password": "12345678", "role": "owner"})
    for response in (client.patch(f"{API}/users/root", json={"role": "editor"}), client.delete(f"{API}/users/root")):
        assert response.status_code == 409 and response.json()["code"] == "last_owner"
        assert "only owner" in response.json()["message"]
    client.post(f"{API}/users", json={"username": "second", "password": "12345678", "role": "owner"})
    assert client.patch(f"{API}/users/root", json={"role": "editor"}).json()["role"] == "editor"
    assert client.delete(f"{API}/users/second").json()["code"] == "last_owner"


def test_tokens_create_list_revoke(client):
    created = client.post(f"{API}/tokens", json={"name": "ci", "role": "editor"})
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "role", "token"} and body["role"] == "editor"
    as_ci = {"Authorization": f"Bearer {body['token']}"}
    assert client.post(f"{API}/sources", json={"name": "Shop"}, headers=as_ci).status_code == 201
    assert client.get(f"{API}/tokens", headers=as_ci).json()["code"] == "forbidden"  # owners only
    listed = client.get(f"{API}/tokens").json()["tokens"]
    assert body["token"] not in str(listed) and all("token" not in t and "token_hash" not in t for t in listed)
    ci = next(t for t in listed if t["id"] == body["id"])
    assert ci["name"] == "ci" and ci["role"] == "editor" and ci["created"] and ci["last_used"]
    assert client.post(f"{API}/tokens", json={"name": "x", "role": "root"}).json()["field"] == "role"
    assert client.post(f"{API}/tokens", json={"name": "ro"}).json()["role"] == "viewer"
    assert client.delete(f"{API}/tokens/{body['id']}").status_code == 204
    refused = client.get(f"{API}/sources", headers=as_ci)
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    assert client.delete(f"{API}/tokens/{body['id']}").json()["code"] == "not_found"


def test_a_viewer_token_reads_but_cannot_write(client):
    token = client.post(f"{API}/tokens", json={"name": "dash", "role": "viewer"}).json()["token"]
    as_viewer = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{API}/sources", headers=as_viewer).status_code == 200
    refused = client.post(f"{API}/sources", json={"name": "Nope"}, headers=as_viewer)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert "viewer" in refused.json()["message"] and "editor" in refused.json()["message"]
    assert client.get(f"{API}/sources").json()["sources"] == []


def test_last_used_is_written_at_most_once_a_minute(engine):
    token = tokens.issue_token(engine, "t", "viewer")
    assert tokens.find_token(engine, token["token"])["role"] == "viewer"
    first = tokens.list_tokens(engine)[0]["last_used_at"]
    assert first is not None
    tokens.find_token(engine, token["token"])
    assert tokens.list_tokens(engine)[0]["last_used_at"] == first


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_revoking_on_one_server_is_401_at_once_on_another(db_url, catalog):
    engines = [open_store(db_url), open_store(db_url)]
    apps = [create_app(Config(database_url=db_url, delivery_workers=False), engine=e, catalog=catalog,
                       planes=["server.admin"]) for e in engines]
    owner = tokens.create_token(engines[0], "owner", "owner")
    try:
        with TestClient(apps[0]) as one, TestClient(apps[1], raise_server_exceptions=False) as two:
            one.headers["Authorization"] = two.headers["Authorization"] = f"Bearer {owner}"
            made = one.post(f"{API}/tokens", json={"name": "laptop", "role": "editor"}).json()
            as_laptop = {"Authorization": f"Bearer {made['token']}"}
            assert two.get(f"{API}/sources", headers=as_laptop).status_code == 200  # known on both
            assert one.delete(f"{API}/tokens/{made['id']}").status_code == 204
            refused = two.get(f"{API}/sources", headers=as_laptop)
            assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    finally:
        for e in engines:
            e.dispose()


def test_migration_9_makes_the_existing_account_and_tokens_owners(db_url):
    from sqlalchemy import inspect, text

    from server.store import migrations
    from server.store.engine import make_engine
    from server.store.schema import metadata
    from server.store.workspace import now

    migrations._import_table_modules()
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:  # what the previous release left: no role columns
            metadata.create_all(conn)
            for table in ("web_admin_users", "admin_tokens"):
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN role"))
            for number in range(1, 9):
                conn.execute(migrations.schema_migrations.insert().values(
                    version=number, description=f"m{number}", applied_at=now()))
            conn.execute(text("INSERT INTO web_admin_users (username, password_hash, created_at) "
                              "VALUES ('admin', 'x', '2026-01-01')"))
            conn.execute(text("INSERT INTO admin_tokens (name, token_hash, created_at) VALUES ('old', 'h', '2026-01-01')"))
        assert "role" not in {c["name"] for c in inspect(engine).get_columns("admin_tokens")}
        assert migrations.migrate(engine) == [n for n, _, _ in migrations.MIGRATIONS if n >= 9]
        assert [u["role"] for u in web_store.list_users(engine)] == ["owner"]
        assert [t["role"] for t in tokens.list_tokens(engine)] == ["owner"]
        assert migrations.migrate(engine) == []
    finally:
        engine.dispose()

"""The ``library_name`` source setting (issue #15): context.library.name of a source's bundle.

Default ``switchboard.js``; a migrating site sets ``analytics.js`` through the admin API, the web
app or the CLI. It is part of the settings version (history, rollback, bundle freshness), it
reaches the bundle only through ``tojson``, and a database from before it gets the column."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from server.api import library_name
from server.cdn.bundles import bundle_config, render_bundle
from server.config import Config
from server.store import migrations, open_store, workspace
from server.store.engine import make_engine
from server.store.schema import metadata

ROOT = Path(__file__).resolve().parent.parent


def test_clean_accepts_library_names_and_refuses_markup():
    assert library_name.clean("analytics.js") == "analytics.js"
    assert library_name.clean(" @segment/analytics-next ") == "@segment/analytics-next"
    for default in (None, "", "  ", "switchboard.js"):
        assert library_name.clean(default) is None
    for bad in ("</script>", "a b", "x" * 41, 3, "a\u2028b", "a\nb", '"quoted"'):
        with pytest.raises(library_name.LibraryNameError):
            library_name.clean(bad)


def test_admin_api_sets_resets_and_refuses(client, engine):
    source = client.post("/api/v1/sources", json={"name": "Shop"}).json()
    assert source["library_name"] == "switchboard.js"
    version = source["settings_version"]

    changed = client.patch(f"/api/v1/sources/{source['id']}", json={"library_name": "analytics.js"})
    assert changed.status_code == 200 and changed.json()["library_name"] == "analytics.js"
    assert changed.json()["settings_version"] == version + 1   # a new version: bundles rebuild
    same = client.patch(f"/api/v1/sources/{source['id']}", json={"library_name": "analytics.js"}).json()
    assert same["settings_version"] == version + 1              # unchanged is not a version

    bad = client.patch(f"/api/v1/sources/{source['id']}", json={"library_name": "<b>"})
    assert bad.status_code == 422 and bad.json()["field"] == "library_name" and bad.json()["message"]
    assert client.get(f"/api/v1/sources/{source['id']}").json()["library_name"] == "analytics.js"

    back = client.patch(f"/api/v1/sources/{source['id']}", json={"library_name": None}).json()
    assert back["library_name"] == "switchboard.js"
    summaries = [v["summary"] for v in client.get(f"/api/v1/sources/{source['id']}/versions").json()["versions"]]
    assert "Source library name 'analytics.js'" in summaries


def test_bundle_config_carries_it_through_tojson_and_rollback_restores_it(engine, catalog):
    source = workspace.create_source(engine, "Shop")
    config = Config(public_url="https://sb.example.com")
    key = source["write_key"]
    assert bundle_config(config, catalog, workspace.public_config(engine, key))["libraryName"] == "switchboard.js"

    workspace.update_source(engine, source["id"], library_name="analytics.js")
    current = workspace.public_config(engine, key)
    assert bundle_config(config, catalog, current)["libraryName"] == "analytics.js"
    rendered = render_bundle(config, catalog, current)
    assert '"libraryName": "analytics.js"' in rendered      # the config literal, from tojson

    workspace.rollback(engine, source["id"], 1)              # version 1: before the change
    assert workspace.get_source(engine, source["id"])["library_name"] is None
    assert bundle_config(config, catalog, workspace.public_config(engine, key))["libraryName"] == "switchboard.js"


def test_web_app_form_sets_it(tmp_path):
    # The web app's source page (signed in as in tests/test_web.py).
    from starlette.testclient import TestClient

    from server.app import create_app
    from server.web import accounts

    url = f"sqlite:///{tmp_path / 'web.db'}"
    config = Config(database_url=url, delivery_workers=False, admin_password="correct horse battery")
    engine = open_store(url)
    try:
        accounts.ensure_admin(config, engine)
        source = workspace.create_source(engine, "Shop")
        app = create_app(config, engine=engine, planes=["server.admin", "server.web"])
        with TestClient(app) as web:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/sign-in").text).group(1)
            web.post("/sign-in", data={"csrf_token": csrf, "username": "admin", "password": "correct horse battery",
                                       "next": "/sources"})
            page = web.get(f"/sources/{source['id']}").text
            assert 'name="library_name" value="switchboard.js"' in page
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            done = web.post(f"/sources/{source['id']}/library-name",
                            data={"csrf_token": csrf, "library_name": "analytics.js"})
            assert done.status_code == 200 and "context.library.name = analytics.js" in done.text
            assert workspace.get_source(engine, source["id"])["library_name"] == "analytics.js"
            refused = web.post(f"/sources/{source['id']}/library-name",
                               data={"csrf_token": csrf, "library_name": "<script>"})
            assert "Library name not saved" in refused.text
            assert workspace.get_source(engine, source["id"])["library_name"] == "analytics.js"
    finally:
        engine.dispose()


def test_cli_sets_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_LOG_LEVEL": "WARNING"}

    def cli(*args, expect=0):
        done = subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    cli("sources", "create", "Shop")
    assert "library name analytics.js" in cli("sources", "set", "Shop", "--library-name", "analytics.js").stdout
    refused = cli("sources", "set", "Shop", "--library-name", "a b", expect=2)
    assert "library_name" in refused.stderr and "Traceback" not in refused.stderr
    assert "library name switchboard.js" in cli("sources", "set", "shop", "--library-name", "").stdout
    assert json.loads(cli("sources", "list", "--json").stdout)[0]["name"] == "Shop"


def test_migration_6_adds_the_column_to_an_older_database(db_url):
    migrations._import_table_modules()
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:   # what the previous release left: no sources.library_name
            metadata.create_all(conn)
            conn.execute(text("ALTER TABLE sources DROP COLUMN library_name"))
            conn.execute(migrations.schema_migrations.insert().values(
                version=1, description="create tables", applied_at=workspace.now()))
            conn.execute(migrations.schema_migrations.insert().values(
                version=2, description="create web_sessions", applied_at=workspace.now()))
            conn.execute(text("INSERT INTO sources (name, slug, write_key, enabled, settings_version, created_at, "
                              "updated_at) VALUES ('Old', 'old', 'wk_old', true, 1, '2026-01-01', '2026-01-01')"))
        assert "library_name" not in {c["name"] for c in inspect(engine).get_columns("sources")}
        assert 6 in migrations.migrate(engine)
        assert "library_name" in {c["name"] for c in inspect(engine).get_columns("sources")}
        old = workspace.source_by_write_key(engine, "wk_old")
        assert old["name"] == "Old" and old["library_name"] is None
        assert migrations.migrate(engine) == []
    finally:
        engine.dispose()

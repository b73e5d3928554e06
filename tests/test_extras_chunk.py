"""The core's extras chunk (plugins, middleware, query string; docs/bundle.md): its URL is in every
bundle's config, the plugin route serves it immutable, and the core stays within budget without it."""

from __future__ import annotations

import gzip
import json

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.cdn.bundles import EXTRAS, JS_DIR, build_extras, core_source, minify
from server.config import Config
from server.store import open_store, workspace


@pytest.fixture
def client(db_url):
    engine = open_store(db_url)
    app = create_app(Config(database_url=db_url, delivery_workers=False), engine=engine,
                     planes=["server.health", "server.cdn"])
    source = workspace.create_source(engine, "Shop")
    with TestClient(app) as c:
        yield c, source
    engine.dispose()


def test_bundle_names_the_chunk_and_the_plugin_route_serves_it_immutable(client):
    c, source = client
    bundle = c.get(f"/analytics.js/v1/{source['write_key']}/analytics.min.js").text
    # js_templates/bundle.js.j2 calls the core with the config object: `(function(C,L){...})({...})`.
    config, _ = json.JSONDecoder().raw_decode(bundle, bundle.index(')({"') + 2)
    url = config["extras"]
    assert url == f"http://127.0.0.1:8000/analytics.js/v1/plugins/{EXTRAS}.{build_extras().hash}.js"
    r = c.get(url.removeprefix("http://127.0.0.1:8000"))
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert b"function extrasApi(" in r.content and b"data-sb" in r.content
    # What moved there is not in the core.
    assert "function queryString(" in r.text
    assert not any("function queryString(" in p.read_text() for p in (JS_DIR / "core").glob("*.js"))
    assert '"queryString"' not in core_source() and "queryString" in core_source()  # a lazy method, by name
    assert c.get(f"/analytics.js/v1/plugins/{EXTRAS}.0000000000000000.js").status_code == 404


def test_core_and_chunk_sizes():
    core = len(gzip.compress(minify(core_source()).encode(), 9))
    chunk = len(build_extras().gzip)
    assert core <= 8 * 1024 and chunk <= 3 * 1024, (core, chunk)

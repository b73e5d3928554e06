"""Serving: bundle, immutable bundle, 304, encodings, 404s, settings document, snippet, cache
invalidation through the admin API, and single flight."""

from __future__ import annotations

import asyncio
import gc
import gzip
import re
import time
import tracemalloc

import brotli
import httpx
import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.cdn.bundle_keeping import POLISH_SAMPLE, POLISH_SPACING
from server.cdn.bundles import compress
from server.config import Config
from server.store import bundle_builds, notify, open_store, tokens, workspace

PLANES = ["server.health", "server.admin", "server.cdn"]


@pytest.fixture
def site(db_url):
    """The admin API and the cdn plane on a fresh database (SQLite, then PostgreSQL)."""
    url = db_url
    engine = open_store(url)
    config = Config(database_url=url, delivery_workers=False, bundle_max_age=120, bundle_stale_while_revalidate=600)
    app = create_app(config, engine=engine, planes=PLANES)
    source = workspace.create_source(engine, "Shop")
    workspace.add_destination(engine, source["id"], slug="google_analytics_4", mode="device", enabled=True,
                              settings={"measurement_id": "G-FIRST1", "api_secret": "never-in-browser"})
    token = tokens.create_token(engine, "test")
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, source, engine, app
    engine.dispose()


def bundle_url(source, file="analytics.min.js"):
    return f"/analytics.js/v1/{source['write_key']}/{file}"


def test_bundle_headers_encodings_and_304(site):
    client, source, _, _ = site
    plain = client.get(bundle_url(source), headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("application/javascript")
    assert plain.headers["cache-control"] == "public, max-age=120, stale-while-revalidate=600"
    assert plain.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in plain.headers
    assert b"G-FIRST1" in plain.content and b"never-in-browser" not in plain.content
    etag = plain.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{16}"', etag)

    for encoding, decode in (("br", brotli.decompress), ("gzip", gzip.decompress)):
        # httpx would decode for us; ask for the raw bytes.
        with client.stream("GET", bundle_url(source), headers={"Accept-Encoding": encoding}) as r:
            raw = b"".join(r.iter_raw())
            assert r.headers["content-encoding"] == encoding
            assert r.headers["etag"] != etag
            assert decode(raw) == plain.content
            tag = r.headers["etag"]
        again = client.get(bundle_url(source), headers={"Accept-Encoding": encoding, "If-None-Match": tag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == tag and again.headers["cache-control"].startswith("public")
        weak = client.get(bundle_url(source), headers={"Accept-Encoding": encoding, "If-None-Match": f"W/{tag}"})
        assert weak.status_code == 304

    stale = client.get(bundle_url(source), headers={"Accept-Encoding": "identity", "If-None-Match": '"0000000000000000"'})
    assert stale.status_code == 200 and stale.content == plain.content


def test_accept_encoding_q_zero_is_honoured(site):
    client, source, _, _ = site
    with client.stream("GET", bundle_url(source), headers={"Accept-Encoding": "br;q=0, gzip"}) as r:
        assert r.headers["content-encoding"] == "gzip"
    with client.stream("GET", bundle_url(source), headers={"Accept-Encoding": "*;q=0"}) as r:
        assert "content-encoding" not in r.headers


def test_immutable_url_serves_the_same_bytes(site):
    client, source, _, _ = site
    current = client.get(bundle_url(source), headers={"Accept-Encoding": "identity"})
    digest = current.headers["etag"].strip('"')
    pinned = client.get(bundle_url(source, f"analytics.{digest}.min.js"), headers={"Accept-Encoding": "identity"})
    assert pinned.status_code == 200 and pinned.content == current.content
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    missing = client.get(bundle_url(source, "analytics.0123456789abcdef.min.js"))
    assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"


def test_unknown_and_disabled_keys_are_404_js_comments_not_cached(site):
    client, source, _, _ = site
    unknown = client.get("/analytics.js/v1/no-such-key/analytics.min.js")
    assert unknown.status_code == 404
    assert unknown.headers["cache-control"] == "no-store"
    assert unknown.text.startswith("/*") and "write key" in unknown.text
    assert client.patch(f"/api/v1/sources/{source['id']}", json={"enabled": False}).status_code == 200
    disabled = client.get(bundle_url(source))
    assert disabled.status_code == 404 and "disabled" in disabled.text
    assert client.get(f"/v1/projects/{source['write_key']}/settings").status_code == 404
    assert client.get(f"/snippet/{source['write_key']}.js").status_code == 404


def test_admin_change_gives_next_request_a_new_etag_and_loader_set(site):
    client, source, _, app = site
    first = client.get(bundle_url(source), headers={"Accept-Encoding": "identity"})
    assert b'slug:"google_analytics_4"' in first.content and b'slug:"meta_pixel"' not in first.content
    created = client.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "meta_pixel", "mode": "device", "enabled": True,
        "settings": {"pixel_id": "4242424242", "access_token": "secret-token"}})
    assert created.status_code == 201, created.text
    second = client.get(bundle_url(source), headers={"Accept-Encoding": "identity", "If-None-Match": first.headers["etag"]})
    assert second.status_code == 200
    assert second.headers["etag"] != first.headers["etag"]
    assert b'slug:"meta_pixel"' in second.content and b"4242424242" in second.content
    assert b"secret-token" not in second.content
    dest_id = created.json()["id"]
    assert client.patch(f"/api/v1/destinations/{dest_id}", json={"enabled": False}).status_code == 200
    third = client.get(bundle_url(source), headers={"Accept-Encoding": "identity"})
    assert b'slug:"meta_pixel"' not in third.content
    # The old version stays reachable at its immutable URL, cached or not (rebuilt from history).
    old = first.headers["etag"].strip('"')
    assert client.get(bundle_url(source, f"analytics.{old}.min.js")).status_code == 200
    app.state.bundle_cache._entries.clear()  # evicted: served from the build kept in the store
    pinned = client.get(bundle_url(source, f"analytics.{old}.min.js"), headers={"Accept-Encoding": "identity"})
    assert pinned.status_code == 200 and pinned.content == first.content


def raw_get(client, url, encoding, inm=None):
    headers = {"Accept-Encoding": encoding, **({"If-None-Match": inm} if inm else {})}
    with client.stream("GET", url, headers=headers) as r:
        return r.status_code, r.headers["etag"], b"".join(r.iter_raw())


def wait_polished(client, url, timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while not raw_get(client, url, "gzip")[1].endswith('-gzip-zopfli"'):
        assert time.monotonic() < deadline, "never polished"
        time.sleep(0.02)
    return {encoding: raw_get(client, url, encoding) for encoding in ("gzip", "br")}


def test_a_new_version_is_polished_after_its_first_build_and_the_store_keeps_it(site):
    """The first request builds a version fast and hands it to the polisher: the origin then
    answers with brotli quality 11 and Zopfli's gzip (the same content, smaller), the ETags of
    the fast build still earn a 304, and the store keeps the polished bytes for the next process."""
    client, source, engine, app = site
    cache, url = app.state.bundle_cache, bundle_url(source)
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    digest = plain.headers["etag"].strip('"')
    polished = wait_polished(client, url)
    assert polished["br"][1] == f'"{digest}-br11"'
    assert gzip.decompress(polished["gzip"][2]) == plain.content == brotli.decompress(polished["br"][2])
    fast = compress(plain.content.decode())  # what the first answers carried
    assert len(polished["gzip"][2]) < len(fast.gzip) and len(polished["br"][2]) < len(fast.br)
    for encoding in ("gzip", "br"):  # the fast bytes a browser cached are the same content
        status, tag, body = raw_get(client, url, encoding, fast.etag(encoding))
        assert status == 304 and tag == fast.etag(encoding) and body == b""
    row = bundle_builds.find_hash(engine, source["id"], digest, cache.fingerprint)
    assert row["br_quality"] == 11 and row["gzip"] == polished["gzip"][2] and row["br"] == polished["br"][2]
    cache._entries.clear()  # as a restarted process: read back from the store, already polished
    reads = cache.reads
    assert raw_get(client, url, "gzip")[1:] == polished["gzip"][1:] and cache.reads == reads + 1

    # At most one version a second is polished when it is built (a restart builds thousands):
    # one built right after waits, served fast, until one of its warm requests offers it.
    other = workspace.create_source(engine, "Blog")
    cache.keeper._polished_at = time.monotonic()  # as if another version had been polished just now
    client.get(bundle_url(other), headers={"Accept-Encoding": "identity"})  # built now: its offer is refused
    time.sleep(POLISH_SPACING)
    assert raw_get(client, bundle_url(other), "gzip")[1].endswith('-gzip"')
    for _ in range(POLISH_SAMPLE):  # one warm request in POLISH_SAMPLE offers its version
        client.get(bundle_url(other), headers={"Accept-Encoding": "identity"})
    wait_polished(client, bundle_url(other))


def test_change_made_by_another_process_is_seen_within_a_second(site):
    client, source, engine, app = site
    before = client.get(bundle_url(source), headers={"Accept-Encoding": "identity"}).headers["etag"]
    # Another process changes the settings: no in-process notification reaches this cache, only
    # the settings sequence that the cache's background check reads.
    listeners = list(notify.SETTINGS._subscribers)
    notify.SETTINGS._subscribers.clear()
    try:
        dest = workspace.list_destinations(engine, source["id"])[0]
        workspace.update_destination(engine, dest["id"], settings={"measurement_id": "G-SECOND2"})
    finally:
        notify.SETTINGS._subscribers.extend(listeners)
    changed_at = time.monotonic()
    while time.monotonic() - changed_at < 3:
        after = client.get(bundle_url(source), headers={"Accept-Encoding": "identity"})
        if after.headers["etag"] != before:
            break
        time.sleep(0.05)
    assert b"G-SECOND2" in after.content
    assert time.monotonic() - changed_at < 1.5  # the check runs every 0.5 s


def test_fifty_concurrent_cold_requests_build_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'flight.db'}"
    engine = open_store(url)
    app = create_app(Config(database_url=url, delivery_workers=False), engine=engine, planes=["server.cdn"])
    source = workspace.create_source(engine, "Busy")
    workspace.add_destination(engine, source["id"], slug="meta_pixel", mode="device", enabled=True,
                              settings={"pixel_id": "123123"})

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                responses = await asyncio.gather(*[client.get(bundle_url(source)) for _ in range(50)])
            return responses, app.state.bundle_cache.builds

    responses, builds = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 50
    assert len({r.content for r in responses}) == 1
    assert builds == 1
    engine.dispose()


def test_settings_document_is_segment_shaped_with_cors(site):
    client, source, _, _ = site
    r = client.get(f"/v1/projects/{source['write_key']}/settings")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    doc = r.json()
    segment = doc["integrations"]["Segment.io"]
    assert segment["apiKey"] == source["write_key"]
    assert segment["apiHost"] == "127.0.0.1:8000/v1" and segment["protocol"] == "http"
    assert list(doc["integrations"]) == ["Segment.io"]
    assert doc["metrics"]["sampleRate"] == 0
    [plugin] = doc["remotePlugins"]
    assert plugin["name"] == "Google Analytics 4" and plugin["libraryName"] == "switchboard_google_analytics_4"
    assert plugin["settings"]["measurement_id"] == "G-FIRST1" and "api_secret" not in plugin["settings"]
    assert plugin["url"].startswith("http://127.0.0.1:8000/analytics.js/v1/plugins/google_analytics_4.")
    script = client.get(plugin["url"].removeprefix("http://127.0.0.1:8000"))
    assert script.status_code == 200 and b"switchboard_google_analytics_4" in script.content
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/analytics.js/v1/plugins/google_analytics_4.0000000000000000.js").status_code == 404


SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE
@pytest.mark.parametrize("length", [250, 5000])
def test_a_plugin_slug_too_long_for_a_file_name_is_a_404(site, length):
    # Used to reach Path.is_file() with the slug as a file name: OSError (name too long), a 500.
    client, _, _, _ = site
    url = f"/analytics.js/v1/plugins/{'a' * length}.0123456789abcdef.js"
    for method in ("GET", "HEAD"):
        response = client.request(method, url)
        assert response.status_code == 404 and response.headers["cache-control"] == "no-store"
    assert "no such plugin" in client.get(url).text


@SQLITE
def test_unknown_plugin_slugs_are_not_remembered(site):
    # Each distinct unknown slug used to be cached for ever (two lru_caches keyed by the URL's
    # slug): a client could grow the server's memory without bound. 3,000 slugs of 250 characters
    # (the longest a file name could be, for the old code to get as far as caching them) kept
    # about 1.2 MB; what is left now (under 100 KB) is first-use allocations of the test client
    # and the app, and bounded caches (urllib's of parsed URLs), so the bound leaves room for those.
    client, _, _, _ = site

    def ask(prefix: str, count: int) -> None:
        for n in range(count):
            assert client.get(f"/analytics.js/v1/plugins/{prefix}{n}{'q' * 240}.0123456789abcdef.js").status_code == 404

    ask("warm", 300)  # first-use allocations (routing, the test client) out of the figure
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ask("probe", 3000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 3000 * 100, f"{grown:,} bytes kept after 3,000 unknown slugs"
    # Known plugins are still served (and built once).
    plugin = client.get(f"/v1/projects/{site[1]['write_key']}/settings").json()["remotePlugins"][0]
    assert client.get(plugin["url"].removeprefix("http://127.0.0.1:8000")).status_code == 200


def test_settings_document_carries_segments_consent_settings(site):
    """Consent categories in Segment's shape for analytics-next's consent tools: per plugin under
    ``integrations[creationName].consentSettings`` and ``consentSettings`` at the top."""
    client, source, engine, _ = site
    url = f"/v1/projects/{source['write_key']}/settings"
    assert "consentSettings" not in client.get(url).json()  # nobody needs consent yet: unchanged document
    add = workspace.add_destination
    mixpanel = add(engine, source["id"], slug="mixpanel", mode="device", enabled=True,
                   settings={"token": "0" * 32, "consent_categories": ["Analytics"]})
    add(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
        settings={"url": "https://example.com/hook", "shared_secret": "hush", "consent_categories": ["C0004", "Analytics"]})
    add(engine, source["id"], slug="amplitude", mode="device", enabled=False, settings={"consent_categories": ["Off"]})
    doc = client.get(url).json()
    assert doc["integrations"]["Mixpanel"] == {"consentSettings": {"categories": ["Analytics"]}}
    assert list(doc["integrations"]) == ["Segment.io", "Mixpanel"]  # no type: analytics-next fetches no classic script
    plugins = {p["creationName"]: p for p in doc["remotePlugins"]}
    assert set(plugins) == {"Google Analytics 4", "Mixpanel"}
    assert plugins["Mixpanel"]["settings"]["consent_categories"] == ["Analytics"]
    assert plugins["Google Analytics 4"]["settings"]["consent_categories"] == []
    # Cloud destinations count too; a disabled one does not; GA4 (no categories) is unmapped.
    assert doc["consentSettings"] == {"allCategories": ["Analytics", "C0004"], "hasUnmappedDestinations": True}
    ga4 = workspace.list_destinations(engine, source["id"])[0]
    patched = client.patch(f"/api/v1/destinations/{ga4['id']}", json={"settings": {"consent_categories": ["Analytics"]}})
    assert patched.status_code == 200
    doc = client.get(url).json()
    assert doc["consentSettings"] == {"allCategories": ["Analytics", "C0004"], "hasUnmappedDestinations": False}
    assert doc["integrations"]["Google Analytics 4"] == {"consentSettings": {"categories": ["Analytics"]}}
    assert "hush" not in client.get(url).text and "never-in-browser" not in client.get(url).text
    assert mixpanel["id"] in [p["settings"]["__switchboard"]["id"] for p in doc["remotePlugins"]]


def test_snippet_bundle_and_collector_follow_renamed_paths_and_our_scheme(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    engine = open_store(url)
    config = Config(database_url=url, public_url="http://analytics.example.test:8080", bundle_path="/t/js",
                    collector_prefix="/c")
    app = create_app(config, engine=engine, planes=["server.cdn"])
    source = workspace.create_source(engine, "Blog")
    with TestClient(app) as client:
        r = client.get(f"/snippet/{source['write_key']}.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/javascript")
        text = r.text
        # The bundle's URL: a._cdn + the bundle path + the key given to load() (as the official snippet).
        assert 'a._cdn="http://analytics.example.test:8080"' in text and 'a._cdn+"/t/js/"+K+"/analytics.min.js"' in text
        assert f'analytics.load("{source["write_key"]}");' in text
        assert 'SNIPPET_VERSION="5.2.0"' in text and '__t:"bpc"' in text and "analytics.page();" in text
        # The snippet sends the first events itself to the renamed collector path (early send).
        assert 'E="/c/e"' in text and 'fetch(a._cdn+E,' in text
        bundle = client.get(f"/t/js/{source['write_key']}/analytics.min.js", headers={"Accept-Encoding": "identity"})
        assert bundle.status_code == 200
        # Renamed paths: the bundle posts to {origin}{collector_prefix}/t, analytics-next too.
        assert '"api":"http://analytics.example.test:8080/c"' in bundle.text
        settings = client.get(f"/v1/projects/{source['write_key']}/settings").json()
        assert settings["integrations"]["Segment.io"]["apiHost"] == "analytics.example.test:8080/c"
        assert client.get(f"/analytics.js/v1/{source['write_key']}/analytics.min.js").status_code == 404
    engine.dispose()


def test_no_secret_reaches_any_unauthenticated_response(site, catalog):
    """Every manifest, every setting filled, secrets with sentinels: none in bundle, settings
    document, plugin scripts or snippet, as served."""
    client, source, engine, _ = site
    sentinels = []
    for manifest in catalog:
        for mode in manifest.modes:
            settings = {}
            for s in manifest.settings:
                if s.secret:
                    settings[s.key] = f"SENTINEL-{manifest.slug}-{s.key}-{mode}"
                    sentinels.append(settings[s.key])
                elif s.type == "boolean":
                    settings[s.key] = True
                elif s.type == "select":
                    settings[s.key] = s.choices[0]
                elif s.key == "consent_categories":
                    settings[s.key] = ["Analytics"]  # puts consentSettings in the settings document too
                elif s.type in ("map", "list"):
                    settings[s.key] = {} if s.type == "map" else []
                else:
                    settings[s.key] = "7" if s.type in ("number", "integer") else f"public-{s.key}"
            workspace.add_destination(engine, source["id"], slug=manifest.slug, mode=mode, enabled=True,
                                      settings=settings)
    wk = source["write_key"]
    bodies = {
        "bundle": client.get(bundle_url(source), headers={"Accept-Encoding": "identity"}).text,
        "settings": client.get(f"/v1/projects/{wk}/settings").text,
        "snippet": client.get(f"/snippet/{wk}.js").text,
    }
    for plugin in client.get(f"/v1/projects/{wk}/settings").json()["remotePlugins"]:
        bodies[plugin["name"]] = client.get(plugin["url"].removeprefix("http://127.0.0.1:8000")).text
    assert len(bodies) >= 5 and "public-measurement_id" in bodies["bundle"]
    assert '"consentSettings"' in bodies["settings"]
    for what, body in bodies.items():
        leaked = [s for s in sentinels if s in body]
        assert not leaked, f"{what} leaks {leaked}"


def test_store_outage_serves_the_last_built_version_and_503_for_unknown(site, monkeypatch):
    client, source, engine, app = site
    first = client.get(bundle_url(source), headers={"Accept-Encoding": "identity"})

    def down(*args, **kwargs):
        raise ConnectionError("database is down")

    monkeypatch.setattr(engine, "connect", down)
    app.state.bundle_cache.invalidate(source["write_key"])  # as if told of a change: it must ask the store
    again = client.get(bundle_url(source), headers={"Accept-Encoding": "identity"})
    assert again.status_code == 200 and again.content == first.content
    time.sleep(0.3)  # an unknown key is refused from the directory while it is fresh (0.1 s); then checked
    unknown = client.get("/analytics.js/v1/never-seen/analytics.min.js")
    assert unknown.status_code == 503 and unknown.headers["cache-control"] == "no-store"
    assert unknown.text.startswith("/*") and "unavailable" in unknown.text
    settings = client.get("/v1/projects/never-seen/settings")
    assert settings.status_code == 503 and settings.json()["code"] == "unavailable"

"""The admin REST API (/api/v1) over HTTP, on SQLite and on a real PostgreSQL: every route of
issue 2, the error shape, authentication of every /api/ route of the full app, write-only
secrets for every manifest in the catalog, rollback, and no 500 for any JSON body."""

from __future__ import annotations

import json
import random
import re
import re._parser as sre_parse
import string
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from server import app as app_module
from server.admin import access
from server.admin import api as admin_api
from server.catalog import SECRET_MASK, load_catalog
from server.store import workspace

API = "/api/v1"


def assert_error(response, status: int, code: str | None = None, field: str | None = None) -> dict:
    """Every error: JSON with code and message at the top and under "error" (field when named)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert body["error"]["code"] == body["code"] and body["error"]["message"] == body["message"]
    if code is not None:
        assert body["code"] == code
    if field is not None:
        assert body["field"] == field and body["error"]["field"] == field
    return body


def make_source(client, name="Site") -> dict:
    response = client.post(f"{API}/sources", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


def make_destination(client, source_id, **body) -> dict:
    response = client.post(f"{API}/sources/{source_id}/destinations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# ---------------------------------------------------------------- routes of issue 2


def test_catalog_routes(client, catalog):
    listed = client.get(f"{API}/catalog")
    assert listed.status_code == 200
    slugs = [d["slug"] for d in listed.json()["destinations"]]
    assert slugs == [m.slug for m in catalog] and len(slugs) >= 14
    ga4 = client.get(f"{API}/catalog/google_analytics_4").json()
    assert ga4["name"] == "Google Analytics 4" and set(ga4["modes"]) == {"device", "cloud"}
    api_secret = next(s for s in ga4["settings"] if s["key"] == "api_secret")
    assert api_secret["secret"] is True and api_secret["modes"] == ["cloud"]
    assert_error(client.get(f"{API}/catalog/nope"), 404, "not_found")


def test_sources_routes(client):
    created = client.post(f"{API}/sources", json={"name": "  Shop  "})
    assert created.status_code == 201
    source = created.json()
    assert {"id", "name", "write_key", "enabled", "settings_version"} <= set(source)
    assert (source["name"], source["enabled"], source["settings_version"]) == ("Shop", True, 1)
    sid = source["id"]

    assert client.get(f"{API}/sources").json()["sources"] == [source]
    assert client.get(f"{API}/sources/{sid}").json() == source

    patched = client.patch(f"{API}/sources/{sid}", json={"name": "Store", "enabled": False})
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["enabled"], patched.json()["settings_version"]) == ("Store", False, 2)

    rotated = client.post(f"{API}/sources/{sid}/rotate-write-key")
    assert rotated.status_code == 200
    assert rotated.json()["write_key"] != source["write_key"] and rotated.json()["settings_version"] == 3

    deleted = client.delete(f"{API}/sources/{sid}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(f"{API}/sources").json()["sources"] == []
    for method, path in [
        ("GET", f"/sources/{sid}"), ("PATCH", f"/sources/{sid}"), ("DELETE", f"/sources/{sid}"),
        ("POST", f"/sources/{sid}/rotate-write-key"), ("GET", f"/sources/{sid}/destinations"),
        ("POST", f"/sources/{sid}/destinations"), ("GET", f"/sources/{sid}/versions"),
        ("GET", f"/sources/{sid}/versions/1"), ("POST", f"/sources/{sid}/versions/1/rollback"),
    ]:
        body = {"slug": "hotjar", "settings": {"site_id": "1"}} if path.endswith("/destinations") else {}
        assert_error(client.request(method, API + path, json=body), 404, "not_found")


def test_destinations_routes(client):
    sid = make_source(client)["id"]
    created = client.post(f"{API}/sources/{sid}/destinations", json={
        "slug": "google_analytics_4", "mode": "cloud", "enabled": True,
        "settings": {"measurement_id": "G-ABC123", "api_secret": "shh"},
    })
    assert created.status_code == 201
    dest = created.json()
    assert (dest["source_id"], dest["slug"], dest["mode"], dest["enabled"]) == (sid, "google_analytics_4", "cloud", True)
    assert dest["settings"] == {"measurement_id": "G-ABC123", "api_secret": SECRET_MASK}
    did = dest["id"]
    # The mode defaults to the manifest's default mode; a destination may be saved disabled without its required settings.
    draft = make_destination(client, sid, slug="hotjar")
    assert (draft["mode"], draft["enabled"], draft["settings"]) == ("device", False, {})

    assert client.get(f"{API}/destinations/{did}").json() == dest
    assert [d["id"] for d in client.get(f"{API}/sources/{sid}/destinations").json()["destinations"]] == [did, draft["id"]]

    # PATCH merges settings; null removes a key; enabled and mode can change.
    patched = client.patch(f"{API}/destinations/{did}", json={"settings": {"send_user_id": False}})
    assert patched.status_code == 200
    assert patched.json()["settings"] == {"measurement_id": "G-ABC123", "api_secret": SECRET_MASK, "send_user_id": False}
    switched = client.patch(f"{API}/destinations/{did}", json={"mode": "device", "enabled": False,
                                                               "settings": {"send_user_id": None}})
    assert (switched.json()["mode"], switched.json()["enabled"]) == ("device", False)
    assert "send_user_id" not in switched.json()["settings"]
    assert client.get(f"{API}/sources/{sid}").json()["settings_version"] == 5

    assert client.delete(f"{API}/destinations/{did}").status_code == 204
    for method in ("GET", "PATCH", "DELETE"):
        assert_error(client.request(method, f"{API}/destinations/{did}", json={}), 404, "not_found")
    assert [d["id"] for d in client.get(f"{API}/sources/{sid}/destinations").json()["destinations"]] == [draft["id"]]


def test_versions_routes(client):
    sid = make_source(client)["id"]
    make_destination(client, sid, slug="hotjar", enabled=True, settings={"site_id": "7"})
    versions = client.get(f"{API}/sources/{sid}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["actor"] == "token:test" and "Hotjar" in versions[0]["summary"]
    one = client.get(f"{API}/sources/{sid}/versions/1").json()
    assert one["version"] == 1 and one["content"] == {"source": {"name": "Site", "enabled": True}, "destinations": []}
    assert_error(client.get(f"{API}/sources/{sid}/versions/3"), 404, "not_found")
    assert_error(client.post(f"{API}/sources/{sid}/versions/3/rollback"), 404, "not_found")


def test_tokens_route_creates_a_working_token(client):
    created = client.post(f"{API}/tokens", json={"name": "deploy"})
    assert created.status_code == 201 and created.json()["name"] == "deploy"
    token = created.json()["token"]
    response = client.get(f"{API}/sources", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert_error(client.post(f"{API}/tokens", json={"name": "x" * 201}), 422, field="name")


def test_bootstrap_token_from_the_environment_works(engine, catalog, db_url):
    from server.app import create_app
    from server.config import Config

    config = Config(database_url=db_url, delivery_workers=False, admin_token="boot-strap-token")
    app = create_app(config, engine=engine, catalog=catalog, planes=["server.admin"])
    with TestClient(app) as c:
        assert c.get(f"{API}/sources", headers={"Authorization": "Bearer boot-strap-token"}).status_code == 200
        assert_error(c.get(f"{API}/sources", headers={"Authorization": "Bearer boot-strap-tokeN"}), 401)


# ---------------------------------------------------------------- errors


def test_malformed_json_gets_400_with_code_and_message(client):
    sid = make_source(client)["id"]
    for method, path in [("POST", "/sources"), ("PATCH", f"/sources/{sid}"),
                         ("POST", f"/sources/{sid}/destinations"), ("POST", "/tokens")]:
        for raw in (b"{", b'{"name": }', b"\xff\xfe", b"[1, 2]", b'"text"'):
            response = client.request(method, API + path, content=raw, headers={"Content-Type": "application/json"})
            assert_error(response, 400, "malformed_json")


def test_source_validation_names_the_field(client):
    for body in ({}, {"name": ""}, {"name": 5}, {"name": "x" * 201}, {"name": "tab\tname"}, {"name": "nul\x00"}):
        assert_error(client.post(f"{API}/sources", json=body), 422, "validation_error", field="name")
    assert client.get(f"{API}/sources").json()["sources"] == []


def test_validation_errors_name_the_field(client):
    sid = make_source(client)["id"]
    url = f"{API}/sources/{sid}/destinations"
    cases = [
        ({"slug": "nope"}, "slug"),
        ({"settings": {}}, "slug"),
        ({"slug": "slack", "mode": "device"}, "mode"),
        ({"slug": "hotjar", "enabled": "yes"}, "enabled"),
        ({"slug": "hotjar", "settings": [1]}, "settings"),
        ({"slug": "hotjar", "enabled": True, "settings": {}}, "settings.site_id"),
        ({"slug": "hotjar", "settings": {"site_id": "abc"}}, "settings.site_id"),
        ({"slug": "hotjar", "settings": {"colour": "red"}}, "settings.colour"),
        ({"slug": "google_analytics_4", "enabled": True, "settings": {"measurement_id": "UA-1"}},
         "settings.measurement_id"),
        ({"slug": "google_analytics_4", "mode": "cloud", "enabled": True,
          "settings": {"measurement_id": "G-ABC"}}, "settings.api_secret"),
        ({"slug": "webhooks", "settings": {"batch_size": "ten"}}, "settings.batch_size"),
        ({"slug": "webhooks", "settings": {"headers": ["a"]}}, "settings.headers"),
    ]
    for body, field in cases:
        body = assert_error(client.post(url, json=body), 422, field=field)
        assert body["message"]
    # Required is judged for the chosen mode: GA4's api_secret is cloud-only.
    make_destination(client, sid, slug="google_analytics_4", mode="device", enabled=True,
                     settings={"measurement_id": "G-ABC"})

    dest = make_destination(client, sid, slug="hotjar", enabled=True, settings={"site_id": "1"})
    patch = f"{API}/destinations/{dest['id']}"
    for body, field in [
        ({"slug": "mixpanel"}, "slug"),
        ({"settings": "x"}, "settings"),
        ({"enabled": 1}, "enabled"),
        ({"mode": "cloud"}, "mode"),
        ({"settings": {"site_id": None}}, "settings.site_id"),
    ]:
        assert_error(client.patch(patch, json=body), 422, field=field)
    assert_error(client.patch(f"{API}/sources/{sid}", json={"write_key": "mine"}), 422, field="write_key")
    assert_error(client.patch(f"{API}/sources/{sid}", json={"enabled": "no"}), 422, field="enabled")
    # Nothing above changed anything.
    assert client.get(patch).json()["settings"] == {"site_id": "1"}


def test_consent_categories_are_cleaned_and_bad_ones_refused_with_the_field(client):
    sid = make_source(client)["id"]
    webhooks = client.get(f"{API}/catalog/webhooks").json()
    consent = next(s for s in webhooks["settings"] if s["key"] == "consent_categories")
    assert (consent["type"], consent["secret"], consent["default"]) == ("list", False, [])
    dest = make_destination(client, sid, slug="webhooks", settings={
        "url": "https://example.com/hook", "consent_categories": [" Advertising", "Analytics", "Advertising"]})
    assert dest["settings"]["consent_categories"] == ["Advertising", "Analytics"]
    url = f"{API}/destinations/{dest['id']}"
    for bad in ("Advertising", ["Advertising", 7], [""], ["  "], ["x" * 101], [["Advertising"]], {"a": True}):
        body = assert_error(client.patch(url, json={"settings": {"consent_categories": bad}}), 422,
                            field="settings.consent_categories")
        assert "Consent categories" in body["message"]
        assert_error(client.post(f"{API}/sources/{sid}/destinations", json={
            "slug": "mixpanel", "settings": {"consent_categories": bad}}), 422, field="settings.consent_categories")
    assert client.get(url).json()["settings"]["consent_categories"] == ["Advertising", "Analytics"]
    patched = client.patch(url, json={"settings": {"consent_categories": ["C0004"]}})
    assert patched.status_code == 200 and patched.json()["settings"]["consent_categories"] == ["C0004"]
    cleared = client.patch(url, json={"settings": {"consent_categories": None}})
    assert "consent_categories" not in cleared.json()["settings"]  # back to the default: no consent needed
    # The warehouse has no such setting (it stores every event).
    assert_error(client.post(f"{API}/sources/{sid}/destinations", json={
        "slug": "warehouse", "settings": {"consent_categories": ["Analytics"]}}), 422,
        field="settings.consent_categories")


def test_unknown_paths_and_methods_get_json_errors(client):
    assert_error(client.get(f"{API}/nothing-here"), 404)
    assert_error(client.get(f"{API}/sources/99999999999999999999999"), 404)  # beyond 64 bits: no 500
    sid = make_source(client)["id"]
    for path in ("/sources/999999999999999999", f"/sources/{sid}/versions/999999999999999999",
                 "/destinations/999999999999999999", f"/sources/{sid}/versions/99999999999999999999"):
        assert_error(client.get(API + path), 404)
    assert_error(client.post(f"{API}/sources", content=b" " * 1_000_001 + b"{}"), 413, "payload_too_large")
    assert_error(client.put(f"{API}/sources"), 405)


# ---------------------------------------------------------------- authentication of every route


def _all_routes(routes, prefix=""):
    for route in routes:
        if isinstance(route, Mount):
            yield from _all_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            yield prefix + route.path, route


def _concrete(path: str) -> str:
    """A plausible URL for a route pattern: numbers for int parameters, "x" for the rest."""
    return re.sub(r"{(\w+)(?::(\w+))?}", lambda m: "1" if m.group(2) in ("int", "float") else "x", path)


@pytest.fixture
def full_app(engine, catalog, sqlite_url):
    from server.app import create_app
    from server.config import Config

    # Every plane that exists, exactly as `switchboard serve` assembles them.
    return create_app(Config(database_url=sqlite_url, delivery_workers=False), engine=engine, catalog=catalog,
                      planes=[plane.__name__ for plane in app_module.PLANES])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_api_route_of_the_full_app_demands_a_valid_token(full_app, admin_token):
    client = TestClient(full_app, raise_server_exceptions=False)
    checked = []
    for path, route in _all_routes(full_app.routes):
        if not path.startswith("/api/v1/"):
            continue  # /api/docs is the web app's page for people: a signed-in session, not a token
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            url = _concrete(path)
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {admin_token}"},
                            {"Authorization": f"Bearer {admin_token}x"}):
                response = client.request(method, url, headers=headers, json={})
                assert response.status_code == 401, f"{method} {path} answered {response.status_code} with {headers}"
                assert_error(response, 401, "unauthorized")
                assert response.headers["www-authenticate"].startswith("Bearer")
            checked.append((method, path))
    ours = {(r.methods - {"HEAD"}).pop() + " " + r.path for r in admin_api.routes(None)}
    assert ours <= {f"{m} {p}" for m, p in checked}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_openapi_describes_every_api_route_of_the_full_app(full_app, admin_token):
    client = TestClient(full_app)
    document = client.get(f"{API}/openapi.json", headers={"Authorization": f"Bearer {admin_token}"}).json()
    assert document["openapi"].startswith("3.")
    described = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    expected = set()
    for path, route in _all_routes(full_app.routes):
        if path.startswith("/api/v1"):
            plain = re.sub(r"{(\w+):\w+}", r"{\1}", path)
            expected |= {(m, plain) for m in (route.methods or {"GET"}) - {"HEAD"}}
    assert len(expected) >= 18 and expected <= described
    operation = document["paths"]["/api/v1/sources/{id}/versions/{n}/rollback"]["post"]
    assert {p["name"] for p in operation["parameters"]} == {"id", "n"}
    assert operation["security"] == [{"bearer": []}] and operation["summary"]
    # Success statuses match what the routes answer (see the route tests above).
    paths = document["paths"]
    assert "201" in paths["/api/v1/sources"]["post"]["responses"]
    assert "201" in paths["/api/v1/sources/{id}/destinations"]["post"]["responses"]
    assert "204" in paths["/api/v1/sources/{id}"]["delete"]["responses"]
    assert "204" in paths["/api/v1/destinations/{id}"]["delete"]["responses"]
    assert "200" in paths["/api/v1/sources/{id}"]["patch"]["responses"]


# ---------------------------------------------------------------- rollback


def test_rollback_restores_exactly_the_earlier_settings(client, engine):
    sid = make_source(client)["id"]
    hook = make_destination(client, sid, slug="webhooks", enabled=True, settings={
        "url": "https://example.com/hook", "headers": {"X-Key": "k1"}, "shared_secret": "first"})
    pixel = make_destination(client, sid, slug="meta_pixel", enabled=True, settings={"pixel_id": "111"})
    target = client.get(f"{API}/sources/{sid}").json()["settings_version"]
    listed_then = client.get(f"{API}/sources/{sid}/destinations").json()["destinations"]
    stored_then = workspace.list_destinations(engine, sid)

    client.patch(f"{API}/destinations/{hook['id']}", json={"enabled": False, "settings": {
        "url": "https://example.com/other", "shared_secret": "second"}})
    client.delete(f"{API}/destinations/{pixel['id']}")
    added = make_destination(client, sid, slug="hotjar", enabled=True, settings={"site_id": "5"})
    client.patch(f"{API}/sources/{sid}", json={"name": "Renamed", "enabled": False})
    before = client.get(f"{API}/sources/{sid}").json()["settings_version"]

    rolled = client.post(f"{API}/sources/{sid}/versions/{target}/rollback")
    assert rolled.status_code == 200
    assert rolled.json()["version"] == before + 1
    source = client.get(f"{API}/sources/{sid}").json()
    assert (source["settings_version"], source["name"], source["enabled"]) == (before + 1, "Site", True)

    def comparable(rows):
        return [{k: v for k, v in d.items() if k not in ("created_at", "updated_at")} for d in rows]

    listed_now = client.get(f"{API}/sources/{sid}/destinations").json()["destinations"]
    assert comparable(listed_now) == comparable(listed_then)
    assert added["id"] not in [d["id"] for d in listed_now]
    # The secrets came back too (checked in the store: the API never shows them).
    assert comparable(workspace.list_destinations(engine, sid)) == comparable(stored_then)
    assert rolled.json()["content"] == client.get(f"{API}/sources/{sid}/versions/{target}").json()["content"]
    assert str(target) in client.get(f"{API}/sources/{sid}/versions").json()["versions"][0]["summary"]


# ---------------------------------------------------------------- secrets never come back


_POOL = string.ascii_letters + string.digits + "-_."


def _in_class(char: str, items) -> bool:
    negate, hit = False, False
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            hit |= char == chr(av)
        elif name == "RANGE":
            hit |= av[0] <= ord(char) <= av[1]
        elif name == "CATEGORY":
            kind = str(av)
            test = {"DIGIT": char.isdigit(), "WORD": char.isalnum() or char == "_", "SPACE": char.isspace()}
            for key, value in test.items():
                if kind == f"CATEGORY_{key}":
                    hit |= value
                elif kind == f"CATEGORY_NOT_{key}":
                    hit |= not value
    return hit != negate


def _sample(parsed, rng: random.Random) -> str:
    out = []
    for op, av in parsed:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(av))
        elif name == "NOT_LITERAL":
            out.append(rng.choice([c for c in _POOL if c != chr(av)]))
        elif name == "ANY":
            out.append(rng.choice(string.ascii_letters + string.digits))
        elif name == "IN":
            out.append(rng.choice([c for c in _POOL if _in_class(c, av)]))
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, sub = av
            count = low if low == high else rng.randint(max(low, 12), max(low, 12) + 8)
            count = min(count, high)
            out.extend(_sample(sub, rng) for _ in range(count))
        elif name == "SUBPATTERN":
            out.append(_sample(av[-1], rng))
        elif name == "BRANCH":
            out.append(_sample(rng.choice(av[1]), rng))
        elif name == "AT":
            continue
        else:
            raise NotImplementedError(f"pattern element {name}")
    return "".join(out)


def matching_value(pattern: str, rng: random.Random) -> str:
    """A random string that fully matches ``pattern`` (repeats are long, so values are unique)."""
    value = _sample(sre_parse.parse(pattern), rng)
    assert re.fullmatch(pattern, value), (pattern, value)
    return value


def _public_value(setting, rng):
    if setting.type == "string":
        return matching_value(setting.pattern, rng) if setting.pattern else "value"
    return {"number": 1, "integer": 1, "boolean": True, "select": setting.choices[0] if setting.choices else None,
            "map": {"k": "v"}, "list": ["a"]}[setting.type]


def _secret_value(setting, rng):
    """(value to store, the text that must never come back)."""
    if setting.type == "string":
        text = matching_value(setting.pattern, rng) if setting.pattern else f"SENTINEL{uuid.uuid4().hex}"
        return text, text
    text = f"SENTINEL{uuid.uuid4().hex}"
    if setting.type == "map":
        return {"X-Sentinel": text}, text
    if setting.type == "list":
        return [text], text
    if setting.type in ("number", "integer"):
        number = rng.randint(10**12, 10**13)
        return number, str(number)
    raise AssertionError(f"{setting.key}: a {setting.type} secret cannot carry a sentinel")


def test_no_secret_of_any_manifest_ever_appears_in_a_response(client, engine, catalog):
    rng = random.Random(20260129)
    sid = make_source(client)["id"]
    sentinels: dict[str, str] = {}
    bodies: list[tuple[str, str]] = []
    created: list[tuple[Any, str, dict, dict]] = []  # manifest, mode, stored settings, dest json

    for manifest in catalog:
        for mode in manifest.modes:
            secrets = [s for s in manifest.settings if s.secret and s.applies_to(mode)]
            if not secrets:
                continue
            settings = {s.key: _public_value(s, rng) for s in manifest.settings
                        if s.required and not s.secret and s.applies_to(mode)}
            for setting in secrets:
                value, text = _secret_value(setting, rng)
                settings[setting.key] = value
                sentinels[text] = f"{manifest.slug}.{setting.key} ({mode})"
                if setting.type == "string" and setting.pattern:
                    # A malformed secret is refused without being quoted back.
                    bad = dict(settings, **{setting.key: "!" + text})
                    refused = client.post(f"{API}/sources/{sid}/destinations",
                                          json={"slug": manifest.slug, "mode": mode, "settings": bad})
                    assert_error(refused, 422, field=f"settings.{setting.key}")
                    bodies.append((f"422 for {manifest.slug}.{setting.key}", refused.text))
            body = {"slug": manifest.slug, "mode": mode, "enabled": True, "settings": settings}
            response = client.post(f"{API}/sources/{sid}/destinations", json=body)
            if response.status_code == 422:  # required public values we could not guess
                response = client.post(f"{API}/sources/{sid}/destinations", json=dict(body, enabled=False))
            assert response.status_code == 201, (manifest.slug, mode, response.text)
            dest = response.json()
            for setting in secrets:
                assert dest["settings"][setting.key] == SECRET_MASK
            bodies.append((f"create {manifest.slug} ({mode})", response.text))
            created.append((manifest, mode, settings, dest))
    assert {m.slug for m, *_ in created} >= {"webhooks", "google_analytics_4", "slack", "warehouse"}

    # Sending the mask back keeps every stored secret; changing a public value still works.
    for manifest, mode, settings, dest in created:
        masked = {s.key: SECRET_MASK for s in manifest.settings if s.secret and s.key in settings}
        patched = client.patch(f"{API}/destinations/{dest['id']}", json={"settings": masked})
        assert patched.status_code == 200, patched.text
        bodies.append((f"patch {manifest.slug}", patched.text))
        assert workspace.get_destination(engine, dest["id"])["settings"] == settings

    # A rollback to the current version re-shows the whole configuration.
    current = client.get(f"{API}/sources/{sid}").json()["settings_version"]
    rolled = client.post(f"{API}/sources/{sid}/versions/{current}/rollback")
    assert rolled.status_code == 200
    bodies.append(("rollback", rolled.text))
    for path in ["/sources", f"/sources/{sid}", f"/sources/{sid}/destinations", f"/sources/{sid}/versions",
                 "/catalog", *[f"/destinations/{d['id']}" for *_, d in created]]:
        response = client.get(API + path)
        assert response.status_code == 200
        bodies.append((path, response.text))
    for version in client.get(f"{API}/sources/{sid}/versions").json()["versions"]:
        response = client.get(f"{API}/sources/{sid}/versions/{version['version']}")
        bodies.append((f"version {version['version']}", response.text))

    for where, text in bodies:
        for sentinel, origin in sentinels.items():
            assert sentinel not in text, f"the secret {origin} leaked into {where}"
    # The store really holds them (so the sweep above was not vacuous).
    stored = json.dumps([workspace.get_destination(engine, d["id"])["settings"] for *_, d in created])
    assert all(sentinel in stored for sentinel in sentinels)


# ---------------------------------------------------------------- no 500, whatever the body


# Any text, ASCII text, and short runs of characters where databases and parsers differ
# (NUL and other controls, quotes, surrogate pairs, the mask).
_texts = (st.text(max_size=30) | st.text(st.characters(max_codepoint=0x7F), max_size=30)
          | st.lists(st.sampled_from(["\x00", "\x01", "\t", "\n", "\x7f", " ", '"', "\\", "'", "é", "𝄞", "a",
                                      "%", "_", SECRET_MASK]), min_size=1, max_size=6).map("".join))


def _json_values():
    scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
               | _texts | st.sampled_from(["", SECRET_MASK, "device", "cloud"]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=10), inner, max_size=4), max_leaves=12)


_CATALOG = load_catalog()
_SETTING_KEYS = sorted({s.key for m in _CATALOG for s in m.settings})
_BODY_KEYS = ["name", "slug", "mode", "enabled", "settings"]
_settings_dicts = st.dictionaries(st.sampled_from(_SETTING_KEYS) | st.text(max_size=6), _json_values(), max_size=5)
# Bodies shaped like the real ones (known keys, plausible and implausible values) most of the
# time; arbitrary JSON and arbitrary bytes the rest.
_shaped = st.fixed_dictionaries({}, optional={
    "name": _texts | st.text(max_size=250) | _json_values(),
    "slug": st.sampled_from([m.slug for m in _CATALOG]) | st.text(max_size=10),
    "mode": st.sampled_from(["device", "cloud", "both", ""]) | _json_values(),
    "enabled": st.booleans() | _json_values(),
    "settings": _settings_dicts | _json_values(),
})
_bodies = st.one_of(
    _shaped, _shaped, _shaped,
    st.dictionaries(st.sampled_from(_BODY_KEYS), _texts, min_size=1, max_size=3),
    st.fixed_dictionaries({"slug": st.sampled_from([m.slug for m in _CATALOG]),
                           "settings": st.dictionaries(st.sampled_from(_SETTING_KEYS), _texts, max_size=4)}),
    st.dictionaries(st.sampled_from(_BODY_KEYS) | st.text(max_size=6), _json_values(), max_size=5),
    _json_values(),
)
_raw = _bodies.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=60)

_ADMIN_ROUTES = [*admin_api.routes(None), *access.routes(None)]
_WRITE_ROUTES = [(m, r.path) for r in _ADMIN_ROUTES for m in (r.methods or set()) if m in ("POST", "PATCH")]


def test_every_write_route_is_fuzzed():
    assert len(_WRITE_ROUTES) >= 9


def assert_ok_or_clean_error(response, what) -> None:
    assert response.status_code < 500, (what, response.text)
    if response.status_code >= 400:
        assert_error(response, response.status_code)


# One body per example, sent to every write route (fewer fixtures than one test per route).
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=_raw)
def test_no_json_body_makes_a_write_route_fail_with_500(client, raw):
    source = client.get(f"{API}/sources").json()["sources"]
    sid = source[0]["id"] if source else make_source(client)["id"]
    dests = client.get(f"{API}/sources/{sid}/destinations").json()["destinations"]
    did = dests[0]["id"] if dests else make_destination(client, sid, slug="webhooks")["id"]
    for method, pattern in _WRITE_ROUTES:
        path = pattern.replace("{id:int}/versions", f"{sid}/versions").replace("{n:int}", "1")
        path = path.replace("/destinations/{id:int}", f"/destinations/{did}").replace("{id:int}", str(sid))
        path = path.replace("{username:str}", "someone")
        response = client.request(method, path, content=raw, headers={"Content-Type": "application/json"})
        assert_ok_or_clean_error(response, (method, path, raw))


_ID_ROUTES = [(m, r.path) for r in _ADMIN_ROUTES if ":int}" in r.path for m in sorted(r.methods - {"HEAD"})]
_ids = st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**63 - 1, 10**18 - 1]) | st.integers(0, 10**18 - 1)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first=_ids, second=_ids)
def test_no_id_in_a_path_makes_a_route_fail_with_500(client, first, second):
    assert len(_ID_ROUTES) >= 12
    for method, pattern in _ID_ROUTES:
        values = iter((first, second))
        path = re.sub(r"{\w+:int}", lambda m: str(next(values)), pattern)
        assert_ok_or_clean_error(client.request(method, path, json={}), (method, path))

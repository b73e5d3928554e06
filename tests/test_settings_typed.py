"""Typed settings: the ``integer`` manifest type (count settings refuse fractions) and error
messages that say what is expected in words, never a regular expression — in the validator,
the admin API (422 with code and message) and the web form (the error under its field)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.catalog import DESTINATIONS_DIR, CatalogError, SettingsError, load_catalog, parse_manifest, validate_settings
from server.config import Config
from server.store import open_store, tokens, workspace
from test_web import HTML, _csrf, _web_client, sign_in

CATALOG = load_catalog()
WEBHOOKS = CATALOG.get("webhooks")
URL = {"url": "https://hooks.example.com/in"}
PATTERNED = [(m, s) for m in CATALOG for s in m.settings if s.pattern]
COUNTS = [("webhooks", "batch_size"), ("warehouse", "sync_interval_seconds"), ("warehouse", "batch_rows"),
          ("warehouse", "column_limit")]


@pytest.mark.parametrize("slug,key", COUNTS)
def test_count_settings_are_integers(slug, key):
    assert CATALOG.get(slug).setting(key).type == "integer"


def test_an_integer_refuses_fractions_and_keeps_whole_numbers():
    for bad in (2.5, 7.9, 1.0000001):
        with pytest.raises(SettingsError) as caught:
            validate_settings(WEBHOOKS, {**URL, "batch_size": bad}, "cloud")
        assert caught.value.errors[0] == {"field": "batch_size", "message": "Batch size must be a whole number"}
    for bad in ("ten", True, [3]):
        with pytest.raises(SettingsError) as caught:
            validate_settings(WEBHOOKS, {**URL, "batch_size": bad}, "cloud")
        assert "whole number" in caught.value.errors[0]["message"]
    cleaned = validate_settings(WEBHOOKS, {**URL, "batch_size": 20.0}, "cloud")["batch_size"]
    assert cleaned == 20 and type(cleaned) is int


@pytest.mark.parametrize("manifest,setting", PATTERNED, ids=[f"{m.slug}.{s.key}" for m, s in PATTERNED])
def test_a_pattern_error_says_what_is_expected_in_words(manifest, setting):
    mode = setting.modes[0]
    with pytest.raises(SettingsError) as caught:
        validate_settings(manifest, {setting.key: "~~ not it ~~"}, mode, enabled=False)
    message = caught.value.errors[0]["message"]
    assert setting.pattern not in message and "pattern" not in message
    assert message.endswith(f"expected {setting.pattern_description}")
    assert not re.search(r"[\[\]\\{}]|\(\?|\+\)|\]\+", setting.pattern_description), setting.pattern_description
    assert manifest.to_json()["settings"][list(manifest.settings).index(setting)]["pattern_description"]


def _copy(tmp_path: Path, slug: str) -> Path:
    folder = tmp_path / slug
    folder.mkdir()
    (folder / "manifest.json").write_text((DESTINATIONS_DIR / slug / "manifest.json").read_text())
    return folder / "manifest.json"


def _edit_setting(path: Path, key: str, **changes) -> None:
    data = json.loads(path.read_text())
    setting = next(s for s in data["settings"] if s["key"] == key)
    for name, value in changes.items():
        if value is None:
            setting.pop(name, None)
        else:
            setting[name] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("key,changes,words", [
    ("measurement_id", {"pattern_description": None}, "pattern_description: is missing"),
    ("measurement_id", {"pattern_description": "  "}, "pattern_description: is missing"),
    ("cookie_domain", {"pattern_description": "a domain"}, "pattern_description: goes with a pattern"),
])
def test_manifest_pattern_descriptions_are_checked(tmp_path, key, changes, words):
    path = _copy(tmp_path, "google_analytics_4")
    _edit_setting(path, key, **changes)
    with pytest.raises(CatalogError) as caught:
        parse_manifest(path)
    assert words in str(caught.value) and f"settings[{key}]" in str(caught.value)


def test_manifest_integer_bounds_must_be_whole(tmp_path):
    path = _copy(tmp_path, "webhooks")
    _edit_setting(path, "batch_size", maximum=99.5)
    with pytest.raises(CatalogError) as caught:
        parse_manifest(path)
    assert "settings[batch_size].maximum: must be a whole number" in str(caught.value)
    _edit_setting(path, "batch_size", maximum=100, type="string", minimum=None)
    with pytest.raises(CatalogError) as caught:
        parse_manifest(path)
    assert "only for number and integer settings" in str(caught.value)


# ---------------------------------------------------------------- the admin API


@pytest.fixture
def api(sqlite_url, catalog):
    engine = open_store(sqlite_url)
    app = create_app(Config(database_url=sqlite_url, delivery_workers=False), engine=engine, catalog=catalog,
                     planes=["server.admin"])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {tokens.create_token(engine, 'test')}"
        client.engine = engine
        yield client
    engine.dispose()


def test_api_refuses_a_fractional_batch_size_with_code_and_message(api):
    source = api.post("/api/v1/sources", json={"name": "Site"}).json()
    path = f"/api/v1/sources/{source['id']}/destinations"
    answer = api.post(path, json={"slug": "webhooks", "settings": {**URL, "batch_size": 7.9}})
    assert answer.status_code == 422
    body = answer.json()
    assert (body["code"], body["message"], body["field"]) == (
        "validation_error", "Batch size must be a whole number", "settings.batch_size")
    assert workspace.list_destinations(api.engine, source["id"]) == []
    made = api.post(path, json={"slug": "webhooks", "settings": {**URL, "batch_size": 8}})
    assert made.status_code == 201 and made.json()["settings"]["batch_size"] == 8
    patched = api.patch(f"/api/v1/destinations/{made.json()['id']}", json={"settings": {"batch_size": 2.5}})
    assert patched.status_code == 422 and patched.json()["message"] == "Batch size must be a whole number"


def test_api_pattern_error_is_in_words(api):
    source = api.post("/api/v1/sources", json={"name": "Site"}).json()
    answer = api.post(f"/api/v1/sources/{source['id']}/destinations",
                      json={"slug": "webhooks", "settings": {"url": "ftp://example.com"}})
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "validation_error"
    assert body["message"] == ("Webhook URL 'ftp://example.com' does not look right: expected an http(s) URL "
                               "like https://example.com/hook")
    catalog_entry = api.get("/api/v1/catalog/webhooks").json()
    url_setting = next(s for s in catalog_entry["settings"] if s["key"] == "url")
    assert url_setting["pattern_description"] == "an http(s) URL like https://example.com/hook"


# ---------------------------------------------------------------- the web form


@pytest.fixture
def signed_in(sqlite_url):
    for client in _web_client(sqlite_url):
        assert sign_in(client).status_code == 303
        client.csrf = _csrf(client.get("/sources").text)
        yield client


def test_web_form_refuses_2_5_and_shows_the_error_in_words(signed_in):
    response = signed_in.post("/catalog/webhooks/configure", headers=HTML, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "https://hooks.example.com/in",
        "batch_size": "2.5"})
    assert response.status_code == 422
    error = re.search(r'id="setting-batch_size-error">([^<]*)<', response.text).group(1)
    assert html.unescape(error) == "Batch size must be a whole number"
    assert 'inputmode="numeric"' in response.text
    assert workspace.list_destinations(signed_in.engine, 1) == []


def test_web_form_pattern_error_names_the_format_not_a_regex(signed_in):
    response = signed_in.post("/catalog/google_analytics_4/configure", headers=HTML, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "measurement_id": "UA-1234"})
    assert response.status_code == 422
    error = html.unescape(re.search(r'id="setting-measurement_id-error">([^<]*)<', response.text).group(1))
    assert error == "Measurement ID 'UA-1234' does not look right: expected a Measurement ID like G-XXXXXXX"
    assert "G-[A-Z0-9]+" not in response.text


def test_the_destination_authors_doc_names_every_manifest_field_and_type():
    from server.catalog import _MANIFEST_KEYS, _SETTING_KEYS, SETTING_TYPES

    doc = (Path(__file__).resolve().parent.parent / "docs" / "destinations.md").read_text(encoding="utf-8")
    for name in sorted(_MANIFEST_KEYS | _SETTING_KEYS | set(SETTING_TYPES)):
        assert f"`{name}`" in doc, f"docs/destinations.md does not mention {name}"
    for manifest in CATALOG:  # the modes table: each destination in the right row
        row = next(line for line in doc.splitlines() if line.startswith("| ") and manifest.name in line.split("|")[1])
        device, cloud = (cell.strip() for cell in row.split("|")[2:4])
        assert (device != "—") == ("device" in manifest.modes), manifest.slug
        assert (cloud != "—") == ("cloud" in manifest.modes), manifest.slug

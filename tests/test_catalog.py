"""The destination catalog: the shipped manifests, what makes a manifest unloadable, and the settings validator."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from server.catalog import (
    CATEGORIES,
    CONSENT_KEY,
    DESTINATIONS_DIR,
    SECRET_MASK,
    CatalogError,
    SettingsError,
    load_catalog,
    mask_secrets,
    merge_settings,
    parse_manifest,
    public_settings,
    validate_settings,
)

EXPECTED_SLUGS = {
    "webhooks", "google_analytics_4", "google_tag_manager", "meta_pixel", "mixpanel", "amplitude", "hotjar",
    "intercom", "crisp", "linkedin_insight", "slack", "customerio", "mailchimp", "warehouse",
}

CATALOG = load_catalog()
MANIFESTS = list(CATALOG)


def raw(manifest) -> dict:
    return json.loads(manifest.path.read_text(encoding="utf-8"))


per_manifest = pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m.slug)


# ---------------------------------------------------------------- the shipped catalog


def test_shipped_catalog_has_exactly_the_fourteen_destinations():
    assert {m.slug for m in load_catalog()} == EXPECTED_SLUGS
    assert len(CATALOG) == 14


def test_catalog_is_ordered_by_category_then_name():
    keys = [(CATEGORIES.index(m.category), m.name.lower()) for m in CATALOG]
    assert keys == sorted(keys)


def test_every_integration_name_points_at_one_destination():
    """A call's ``integrations: {"Facebook Pixel": false}`` must reach exactly one destination."""
    names = [name for m in CATALOG for name in m.integration_names]
    assert len(names) == len(set(names)), "two destinations answer to the same integrations name"
    by_name = CATALOG.by_integration_name()
    assert by_name["Facebook Pixel"].slug == "meta_pixel"
    assert by_name["Google Analytics 4 Web"].slug == "google_analytics_4"
    assert by_name["MailChimp"].slug == "mailchimp"
    assert by_name["LinkedIn Insight Tag"].slug == "linkedin_insight"


@pytest.mark.parametrize(
    ("slug", "modes", "default_mode"),
    [
        ("webhooks", ["cloud"], "cloud"),
        ("slack", ["cloud"], "cloud"),
        ("customerio", ["cloud"], "cloud"),
        ("mailchimp", ["cloud"], "cloud"),
        ("warehouse", ["cloud"], "cloud"),
        ("google_tag_manager", ["device"], "device"),
        ("hotjar", ["device"], "device"),
        ("crisp", ["device"], "device"),
        ("linkedin_insight", ["device"], "device"),
        ("google_analytics_4", ["device", "cloud"], "device"),
        ("meta_pixel", ["device", "cloud"], "device"),
        ("mixpanel", ["device", "cloud"], "device"),
        ("amplitude", ["device", "cloud"], "device"),
        ("intercom", ["device", "cloud"], "device"),
    ],
)
def test_modes(slug, modes, default_mode):
    manifest = CATALOG.get(slug)
    assert sorted(manifest.modes) == sorted(modes)
    assert manifest.default_mode == default_mode


# ---------------------------------------------------------------- conformance, every manifest


@per_manifest
def test_manifest_is_valid_on_its_own(manifest):
    assert parse_manifest(manifest.path) == manifest
    assert manifest.path.parent.name == manifest.slug
    assert manifest.default_mode in manifest.modes
    assert set(manifest.methods) == set(manifest.modes)
    assert all(manifest.methods[mode] for mode in manifest.modes), "every mode accepts at least one call"
    assert manifest.name.strip() and manifest.description.strip()
    assert manifest.website.startswith("https://")


@per_manifest
def test_every_setting_explains_itself(manifest):
    for setting in manifest.settings:
        assert setting.label.strip(), f"{manifest.slug}.{setting.key} has no label"
        assert len(setting.description.strip()) > 20, f"{manifest.slug}.{setting.key} needs a real description"


@per_manifest
def test_every_setting_says_explicitly_whether_it_is_secret_and_required(manifest):
    for setting in raw(manifest)["settings"]:
        assert isinstance(setting.get("secret"), bool), f"{manifest.slug}.{setting['key']}: secret"
        assert isinstance(setting.get("required"), bool), f"{manifest.slug}.{setting['key']}: required"


@per_manifest
def test_required_public_device_settings_catch_bad_ids(manifest):
    """An ID pasted into the wrong box must be refused before it reaches every visitor's browser."""
    for setting in manifest.settings:
        if setting.required and not setting.secret and setting.applies_to("device") and "device" in manifest.modes:
            assert setting.pattern or setting.type == "select", f"{manifest.slug}.{setting.key} accepts any text"


@per_manifest
def test_credentials_are_never_public(manifest):
    credential = re.compile(r"secret|access_token|password|webhook_url|database_url|headers")
    for setting in manifest.settings:
        if credential.search(setting.key):
            assert setting.secret, f"{manifest.slug}.{setting.key} looks like a credential but is public"


@per_manifest
def test_device_only_settings_are_never_secret(manifest):
    """A device-only setting exists to reach the browser, so it cannot be secret."""
    for setting in manifest.settings:
        if setting.modes == ("device",):
            assert not setting.secret, f"{manifest.slug}.{setting.key} is device-only yet secret"


@per_manifest
def test_shared_ideas_share_a_key_and_a_shape(manifest):
    for setting in manifest.settings:
        if setting.key == "track_initial_page":
            assert setting.type == "boolean" and setting.default is True and not setting.secret
            assert setting.label == "Track initial page view"
        if setting.key == "region":
            assert setting.type == "select" and setting.default == "us" and "us" in setting.choices
            assert setting.label == "Data region"


FIXED = [
    # slug, key, type, secret, required
    ("webhooks", "url", "string", False, True),
    ("webhooks", "headers", "map", True, False),
    ("webhooks", "shared_secret", "string", True, False),
    ("webhooks", "batch_size", "integer", False, False),
    ("google_analytics_4", "measurement_id", "string", False, True),
    ("google_analytics_4", "api_secret", "string", True, True),
    ("meta_pixel", "pixel_id", "string", False, True),
    ("slack", "webhook_url", "string", True, True),
    ("slack", "templates", "map", False, False),
    ("warehouse", "target", "select", False, False),
    ("warehouse", "database_url", "string", True, False),
    ("warehouse", "sqlite_path", "string", True, False),
    ("warehouse", "sync_interval_seconds", "integer", False, False),
    ("warehouse", "batch_rows", "integer", False, False),
    ("warehouse", "column_limit", "integer", False, False),
]


@pytest.mark.parametrize(("slug", "key", "kind", "secret", "required"), FIXED, ids=lambda v: str(v))
def test_fixed_setting_keys_other_code_depends_on(slug, key, kind, secret, required):
    setting = CATALOG.get(slug).setting(key)
    assert setting is not None, f"{slug}.{key} is missing"
    assert (setting.type, setting.secret, setting.required) == (kind, secret, required)


def test_fixed_defaults_and_modes():
    assert CATALOG.get("webhooks").setting("batch_size").default == 1
    assert CATALOG.get("google_analytics_4").setting("api_secret").modes == ("cloud",)
    warehouse = CATALOG.get("warehouse")
    assert warehouse.setting("target").choices == ("sqlite", "postgresql")
    assert warehouse.setting("target").default == "sqlite"
    assert warehouse.setting("sync_interval_seconds").default == 60
    assert warehouse.setting("batch_rows").default == 5000
    assert warehouse.setting("column_limit").default == 500


def test_id_patterns_accept_real_ids_and_refuse_look_alikes():
    def ok(slug, key, value):
        validate_settings(CATALOG.get(slug), {key: value}, CATALOG.get(slug).default_mode, enabled=False)

    def bad(slug, key, value):
        with pytest.raises(SettingsError) as err:
            ok(slug, key, value)
        assert err.value.field == key

    ok("google_analytics_4", "measurement_id", "G-ABC123XYZ9")
    bad("google_analytics_4", "measurement_id", "UA-12345-1")
    ok("google_tag_manager", "container_id", "GTM-ABC1234")
    bad("google_tag_manager", "container_id", "G-ABC1234")
    ok("meta_pixel", "pixel_id", "123456789012345")
    bad("meta_pixel", "pixel_id", "fb-12345")
    ok("crisp", "website_id", "6f1d3c52-8a1b-4c7e-9f21-0a2b3c4d5e6f")
    bad("crisp", "website_id", "my-site")
    ok("hotjar", "site_id", "1234567")
    bad("hotjar", "site_id", "hj-1234567")
    ok("linkedin_insight", "partner_id", "5432100")
    ok("mixpanel", "token", "0123456789abcdef0123456789abcdef")
    bad("mixpanel", "token", "not a token")
    ok("slack", "webhook_url", "https://hooks.slack.com/services/T000/B000/XXXX")
    bad("slack", "webhook_url", "https://example.com/services/T000")
    ok("webhooks", "url", "https://example.com/hook")
    bad("webhooks", "url", "example.com/hook")
    ok("mailchimp", "api_key", "0123456789abcdef0123456789abcdef-us6")
    bad("mailchimp", "api_key", "0123456789abcdef0123456789abcdef")


# ---------------------------------------------------------------- broken manifests stop the load


def _copy(tmp_path: Path, slug: str = "amplitude", folder: str | None = None) -> Path:
    target = tmp_path / (folder or slug)
    shutil.copytree(DESTINATIONS_DIR / slug, target)
    return target / "manifest.json"


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _setting(data: dict, key: str) -> dict:
    return next(s for s in data["settings"] if s["key"] == key)


def test_an_unedited_copy_loads(tmp_path):
    _copy(tmp_path, "amplitude")
    _copy(tmp_path, "webhooks")
    assert {m.slug for m in load_catalog(tmp_path)} == {"amplitude", "webhooks"}


def _load_error(tmp_path: Path) -> str:
    _copy(tmp_path, "webhooks")  # a good neighbour does not save a broken catalog
    with pytest.raises(CatalogError) as err:
        load_catalog(tmp_path)
    return str(err.value)


def test_bad_json_stops_the_load(tmp_path):
    path = _copy(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").rstrip().rstrip("}"), encoding="utf-8")
    message = _load_error(tmp_path)
    assert "amplitude" in message and "not valid JSON" in message


def test_unknown_setting_type_names_the_field(tmp_path):
    path = _copy(tmp_path)
    _edit(path, lambda d: _setting(d, "api_key").update(type="password"))
    message = _load_error(tmp_path)
    assert "settings[api_key].type" in message and "'password'" in message


def test_folder_name_must_equal_slug(tmp_path):
    _copy(tmp_path, "amplitude", folder="amplitude_v2")
    message = _load_error(tmp_path)
    assert "slug" in message and "amplitude_v2" in message


def test_missing_label_names_the_setting(tmp_path):
    path = _copy(tmp_path)
    _edit(path, lambda d: _setting(d, "api_key").pop("label"))
    message = _load_error(tmp_path)
    assert "settings[api_key].label" in message and "missing" in message


def test_missing_secret_flag_names_the_setting(tmp_path):
    path = _copy(tmp_path)
    _edit(path, lambda d: _setting(d, "secret_key").pop("secret"))
    assert "settings[secret_key].secret" in _load_error(tmp_path)


def test_unknown_category_stops_the_load(tmp_path):
    path = _copy(tmp_path)
    _edit(path, lambda d: d.update(category="Product Analytics"))
    message = _load_error(tmp_path)
    assert "category" in message and "'Product Analytics'" in message


def test_bad_default_names_the_setting(tmp_path):
    path = _copy(tmp_path)
    _edit(path, lambda d: _setting(d, "region").update(default="mars"))
    message = _load_error(tmp_path)
    assert "settings[region].default" in message and "must be one of" in message


def test_folder_without_manifest_stops_the_load(tmp_path):
    (tmp_path / "half_done").mkdir()
    assert "half_done" in _load_error(tmp_path)


# ---------------------------------------------------------------- the settings validator


GA4 = CATALOG.get("google_analytics_4")
WEBHOOKS = CATALOG.get("webhooks")


def _errors(manifest, settings, mode, **kw) -> dict[str, str]:
    with pytest.raises(SettingsError) as err:
        validate_settings(manifest, settings, mode, **kw)
    return {e["field"]: e["message"] for e in err.value.errors}


def test_valid_settings_come_back_cleaned():
    cleaned = validate_settings(GA4, {"measurement_id": "  G-ABC123  ", "send_user_id": False}, "device")
    assert cleaned == {"measurement_id": "G-ABC123", "send_user_id": False}


def test_unknown_key_is_named():
    errors = _errors(GA4, {"measurement_id": "G-ABC123", "measurementId": "G-ABC123"}, "device")
    assert list(errors) == ["measurementId"]
    assert "Google Analytics 4" in errors["measurementId"]


def test_wrong_type_is_named():
    assert "number" in _errors(WEBHOOKS, {"url": "https://example.com", "batch_size": "ten"}, "cloud")["batch_size"]
    assert "true or false" in _errors(GA4, {"measurement_id": "G-ABC123", "send_user_id": "yes"}, "device")[
        "send_user_id"
    ]
    assert "object" in _errors(WEBHOOKS, {"url": "https://example.com", "headers": "Authorization: x"}, "cloud")[
        "headers"
    ]


def test_universal_analytics_id_is_refused_for_ga4():
    errors = _errors(GA4, {"measurement_id": "UA-123"}, "device")
    assert list(errors) == ["measurement_id"]
    assert "UA-123" in errors["measurement_id"]


def test_required_setting_missing_only_matters_when_enabled():
    errors = _errors(GA4, {}, "device")
    assert "measurement_id" in errors and "required" in errors["measurement_id"]
    assert "measurement_id" in _errors(GA4, {"measurement_id": ""}, "device")
    assert validate_settings(GA4, {}, "device", enabled=False) == {}


def test_api_secret_is_required_in_cloud_mode_only():
    settings = {"measurement_id": "G-ABC123"}
    assert validate_settings(GA4, settings, "device") == settings
    assert list(_errors(GA4, settings, "cloud")) == ["api_secret"]
    assert validate_settings(GA4, {**settings, "api_secret": "s3cr3t"}, "cloud")["api_secret"] == "s3cr3t"


def test_all_problems_are_reported_at_once():
    errors = _errors(GA4, {"measurement_id": "UA-1", "bogus": 1}, "cloud")
    assert set(errors) == {"measurement_id", "bogus", "api_secret"}


def test_mode_the_destination_lacks_is_refused():
    assert "mode" in _errors(CATALOG.get("slack"), {}, "device")


def _sample(setting):
    return {"string": "x", "number": 1, "integer": 1, "boolean": True, "map": {"a": "b"}, "list": ["x"]}.get(
        setting.type, setting.choices[0] if setting.choices else None
    )


@per_manifest
def test_public_settings_never_include_a_secret(manifest):
    stored = {s.key: _sample(s) for s in manifest.settings}
    for mode in manifest.modes:
        public = public_settings(manifest, stored, mode)
        secret_keys = {s.key for s in manifest.settings if s.secret}
        assert not secret_keys & set(public), f"{manifest.slug} leaks {secret_keys & set(public)}"
        expected = {s.key for s in manifest.settings if not s.secret and s.applies_to(mode)}
        assert set(public) == expected


def test_public_settings_carry_the_public_ids_and_defaults():
    public = public_settings(GA4, {"measurement_id": "G-ABC123", "api_secret": "s3cr3t"}, "device")
    assert public["measurement_id"] == "G-ABC123"
    assert public["track_initial_page"] is True
    assert "api_secret" not in public
    cloud = public_settings(GA4, {"measurement_id": "G-ABC123", "api_secret": "s3cr3t"}, "cloud")
    assert "api_secret" not in cloud and "track_initial_page" not in cloud


def test_mask_secrets_hides_secret_values_only():
    stored = {"url": "https://example.com/hook", "shared_secret": "s3cr3t", "headers": {"Authorization": "Bearer t"}}
    masked = mask_secrets(WEBHOOKS, stored)
    assert masked == {"url": "https://example.com/hook", "shared_secret": SECRET_MASK, "headers": SECRET_MASK}
    assert "s3cr3t" not in json.dumps(masked) and "Bearer" not in json.dumps(masked)
    assert mask_secrets(WEBHOOKS, {"shared_secret": ""}) == {"shared_secret": ""}, "an unset secret shows as unset"


def test_merge_settings_keeps_a_stored_secret_when_the_mask_comes_back():
    stored = {"url": "https://example.com/hook", "shared_secret": "s3cr3t", "batch_size": 1}
    patch = mask_secrets(WEBHOOKS, stored) | {"batch_size": 10}
    merged = merge_settings(WEBHOOKS, stored, patch)
    assert merged == {"url": "https://example.com/hook", "shared_secret": "s3cr3t", "batch_size": 10}
    assert merge_settings(WEBHOOKS, stored, {"shared_secret": "n3w"})["shared_secret"] == "n3w"
    assert "shared_secret" not in merge_settings(WEBHOOKS, stored, {"shared_secret": None})


def test_number_bounds_are_enforced_with_the_field_named():
    catalog = load_catalog()
    webhooks, warehouse = catalog.get("webhooks"), catalog.get("warehouse")
    url = {"url": "https://hooks.example.com/in"}
    assert validate_settings(webhooks, {**url, "batch_size": 20}, "cloud")["batch_size"] == 20
    for bad, words in ((0, "at least 1"), (101, "at most 100"), (float("nan"), "must be a whole number"),
                       (float("inf"), "must be a whole number"), (2.5, "must be a whole number")):
        with pytest.raises(SettingsError) as caught:
            validate_settings(webhooks, {**url, "batch_size": bad}, "cloud")
        assert caught.value.field == "batch_size" and words in caught.value.errors[0]["message"]
    with pytest.raises(SettingsError) as caught:
        validate_settings(warehouse, {"sync_interval_seconds": 0}, "cloud")
    assert caught.value.field == "sync_interval_seconds"
    assert warehouse.setting("column_limit").to_json()["minimum"] == 20


def test_bounds_on_a_non_number_setting_stop_the_boot(tmp_path):
    folder = tmp_path / "webhooks"
    folder.mkdir()
    manifest = json.loads((DESTINATIONS_DIR / "webhooks" / "manifest.json").read_text())
    next(s for s in manifest["settings"] if s["key"] == "url")["minimum"] = 3
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CatalogError, match=r"settings\[url\]\.minimum"):
        load_catalog(tmp_path)


def test_two_destinations_sharing_a_name_stop_the_boot(tmp_path):
    for slug in ("webhooks", "slack"):
        shutil.copytree(DESTINATIONS_DIR / slug, tmp_path / slug, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = tmp_path / "slack" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["aliases"] = ["webhooks"]  # case-insensitively the name of the Webhooks destination
    path.write_text(json.dumps(manifest))
    with pytest.raises(CatalogError, match=r"is already the name of") as caught:
        load_catalog(tmp_path)
    assert "slack/manifest.json" in str(caught.value) and "webhooks/manifest.json" in str(caught.value)


# ---------------------------------------------------------------- consent categories (docs/consent.md)


@per_manifest
def test_every_destination_but_the_warehouse_has_public_consent_categories_in_both_modes(manifest):
    setting = manifest.setting(CONSENT_KEY)
    if manifest.category == "Warehouses":
        assert setting is None  # the warehouse stores every event; its owners filter on context_consent_*
        return
    assert (setting.type, setting.secret, setting.required, setting.default) == ("list", False, False, [])
    assert setting.modes == manifest.modes
    assert setting.to_json()["key"] == CONSENT_KEY  # the catalog API and the web form list it like any setting
    for mode in manifest.modes:
        assert public_settings(manifest, {}, mode)[CONSENT_KEY] == []
    assert CONSENT_KEY not in {s["key"] for s in raw(manifest)["settings"]}  # it comes from the catalog


def test_a_manifest_declaring_consent_categories_itself_stops_the_load(tmp_path):
    path = _copy(tmp_path)
    _edit(path, lambda d: d["settings"].append(
        {"key": CONSENT_KEY, "label": "Mine", "description": "Mine.", "type": "list", "required": False,
         "secret": False}))
    message = _load_error(tmp_path)
    assert "amplitude/manifest.json" in message and "].key" in message and "reserved" in message


def test_consent_categories_are_cleaned_and_bad_ones_named():
    cleaned = validate_settings(WEBHOOKS, {CONSENT_KEY: [" Advertising ", "C0004", "Advertising"]}, "cloud",
                                enabled=False)
    assert cleaned[CONSENT_KEY] == ["Advertising", "C0004"]  # trimmed, each once, in order; case kept
    assert validate_settings(WEBHOOKS, {CONSENT_KEY: ["ads", "Ads"]}, "cloud", enabled=False)[CONSENT_KEY] == [
        "ads", "Ads"]
    for bad in ("Advertising", {"Advertising": True}, [4], [True], [""], ["  "], ["x" * 101], [None]):
        errors = _errors(WEBHOOKS, {CONSENT_KEY: bad}, "cloud", enabled=False)
        assert list(errors) == [CONSENT_KEY] and errors[CONSENT_KEY].startswith("Consent categories ")
    assert validate_settings(WEBHOOKS, {CONSENT_KEY: ["x" * 100]}, "cloud", enabled=False)[CONSENT_KEY] == ["x" * 100]

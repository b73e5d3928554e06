"""Conformance of every device-mode destination: manifest, loader file and bundle agree.

For each catalog entry with device mode (GA4 and Meta Pixel included): a loader file exists; it
renders and, evaluated in Node (strict mode, as inside the bundle), calls ``SB.loader`` once with
the contract's shape (js_templates/CONTRACT.md); it reads only settings its manifest declares
public for device mode and uses every one of them; it stays within the 1 KB gzip budget (what it
adds to a gzip'd bundle once minified the way bundles are, as tests/test_bundles.py and
bench/bundle.py measure it); a bundle built from the manifest's defaults carries exactly those
public defaults; and secret settings, even when filled in, never appear in the bundle.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess

import pytest

from server.cdn import bundles
from server.catalog import SettingsError, load_catalog, public_settings, validate_settings
from server.config import Config

CATALOG = load_catalog()
DEVICE = [m for m in CATALOG if "device" in m.modes]
BUDGET = 1024  # bytes of gzip -9 a minified loader adds to a bundle (issue 3's budget for each loader)
HANDLERS = {"page", "track", "identify", "group", "alias", "screen"}
# The core applies these itself (CONTRACT.md §7); a loader never reads them.
CORE_SETTINGS = {"track_initial_page", "consent_categories"}  # read by the core (30-loaders.js), not by loaders
# Spec semantic event names (shared/reference/destinations.md Part 4), the keys `events` may use.
SPEC_EVENTS = {
    "Products Searched", "Product List Viewed", "Product List Filtered", "Promotion Viewed", "Promotion Clicked",
    "Product Clicked", "Product Viewed", "Product Added", "Product Removed", "Cart Viewed", "Checkout Started",
    "Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered", "Order Updated", "Order Completed",
    "Order Refunded", "Order Cancelled", "Coupon Entered", "Coupon Applied", "Coupon Denied", "Coupon Removed",
    "Product Added to Wishlist", "Product Removed from Wishlist", "Wishlist Product Added to Cart",
    "Product Shared", "Cart Shared", "Product Reviewed", "Account Created", "Account Deleted", "Signed Up",
    "Signed In", "Signed Out", "Invite Sent", "Account Added User", "Account Removed User", "Trial Started",
    "Trial Ended",
}

per_device_manifest = pytest.mark.parametrize("manifest", DEVICE, ids=lambda m: m.slug)

# Evaluate each loader as the bundle does (one strict-mode scope providing SB) and report its shape.
_SHAPE_JS = r"""
const vm = require("vm");
const sources = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
for (const [slug, src] of Object.entries(sources)) {
  const defs = [];
  try {
    const sandbox = { SB: { loader: (d) => defs.push(d) }, document: {} };
    sandbox.window = sandbox;  // loaders may keep a reference to window; handlers are not run here
    vm.runInNewContext('"use strict";\n' + src, sandbox);
  } catch (e) { out[slug] = { error: String(e) }; continue; }
  out[slug] = { calls: defs.length, defs: defs.map((d) => ({
    keys: Object.keys(d).sort(),
    types: Object.fromEntries(Object.entries(d).map(([k, v]) => [k, typeof v])),
    slug: d.slug,
    events: d.events ? Object.fromEntries(Object.entries(d.events).map(([k, v]) => [k, typeof v])) : null,
  })) };
}
process.stdout.write(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def shapes() -> dict:
    sources = {m.slug: bundles.loader_source(m.slug) for m in DEVICE if bundles.loader_source(m.slug)}
    node = shutil.which("node")
    assert node, "these checks evaluate each loader in Node (>= 18), which the e2e build also needs: install nodejs"
    done = subprocess.run([node, "-e", _SHAPE_JS], input=json.dumps(sources), capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


def _source(manifest) -> str:
    source = bundles.loader_source(manifest.slug)
    assert source is not None, f"{manifest.slug} has device mode but no js_templates/destinations/{manifest.slug}.js.j2"
    return source


def _bundle(manifest, settings: dict) -> str:
    source = {"write_key": "conformanceKey1", "settings_version": 1, "destinations": [
        {"id": 7, "slug": manifest.slug, "mode": "device", "enabled": True, "settings": settings}]}
    return bundles.render_bundle(Config(database_url="sqlite://"), CATALOG, source)


def _config_object(bundle: str) -> dict:
    # js_templates/bundle.js.j2 calls the core with the config object: `(function(C,L){...})({...}, ...)`.
    assert ')({"' in bundle, "the bundle's config object was not found"
    return json.JSONDecoder().raw_decode(bundle, bundle.index(')({"') + 2)[0]


def test_every_loader_file_belongs_to_a_device_mode_destination():
    device = {m.slug for m in DEVICE}
    assert set(bundles.loader_slugs()) <= device, set(bundles.loader_slugs()) - device


@per_device_manifest
def test_loader_declares_the_contract(manifest, shapes):
    _source(manifest)
    shape = shapes[manifest.slug]
    assert "error" not in shape, f"{manifest.slug} does not evaluate: {shape.get('error')}"
    assert shape["calls"] == 1, "a loader calls SB.loader exactly once"
    [d] = shape["defs"]
    assert d["slug"] == manifest.slug
    assert d["types"]["load"] == "function"
    assert d["types"].get("loaded", "function") == "function"
    handlers = HANDLERS & set(d["keys"])
    assert all(d["types"][h] == "function" for h in handlers)
    assert handlers, "a loader maps at least one call"
    assert handlers <= set(manifest.methods["device"]), (
        f"{manifest.slug} handles {handlers - set(manifest.methods['device'])} that its manifest does not list")
    if d["events"] is not None:
        assert set(d["events"]) <= SPEC_EVENTS, f"not Spec event names: {set(d['events']) - SPEC_EVENTS}"
        assert set(d["events"].values()) == {"function"}


@per_device_manifest
def test_loader_reads_only_public_device_settings_and_uses_them_all(manifest):
    read = set(re.findall(r"\bs\.([A-Za-z_$][\w$]*)", _source(manifest)))
    public = {s.key for s in manifest.settings if s.applies_to("device") and not s.secret}
    assert read <= public, f"{manifest.slug} reads settings its manifest does not offer publicly: {read - public}"
    assert public - CORE_SETTINGS <= read, f"{manifest.slug} declares settings it never uses: {public - CORE_SETTINGS - read}"


@per_device_manifest
def test_device_mode_settings_are_all_public(manifest):
    secret = [s.key for s in manifest.settings if s.applies_to("device") and s.secret]
    assert not secret, f"{manifest.slug}: secret settings would be needed in the browser: {secret}"


def _gz(text: str) -> int:
    return len(gzip.compress(text.encode(), 9))


@per_device_manifest
def test_loader_fits_its_size_budget(manifest):
    core = bundles.minify(bundles.core_source(device=True))  # the core of bundles with loaders
    minified = bundles.minify(_source(manifest))
    added = _gz(core + "\n" + minified) - _gz(core)
    print(f"{manifest.slug}: {len(minified)} B minified, {_gz(minified)} B gzip alone, adds {added} B gzip to a bundle")
    assert added <= BUDGET, f"{manifest.slug} adds {added} B gzip to a bundle, over the {BUDGET} B budget"


@per_device_manifest
def test_bundle_from_manifest_defaults_carries_exactly_the_public_defaults(manifest):
    bundle = _bundle(manifest, {})
    assert f'slug: "{manifest.slug}"' in bundle, "the loader is in the bundle"
    [dest] = _config_object(bundle)["destinations"]
    assert dest["slug"] == manifest.slug and manifest.name in dest["names"]
    assert dest["settings"] == public_settings(manifest, {}, "device")
    defaults = {s.key for s in manifest.settings if s.applies_to("device") and not s.secret and s.default is not None}
    assert set(dest["settings"]) == defaults


@per_device_manifest
def test_required_public_settings_must_be_filled_before_enabling(manifest):
    required = {s.key for s in manifest.settings if s.required and s.applies_to("device")}
    assert required, f"{manifest.slug}: a device loader needs at least its vendor ID"
    with pytest.raises(SettingsError) as err:
        validate_settings(manifest, {}, "device", enabled=True)
    assert {e["field"] for e in err.value.errors} == required


def _sentinel(setting, tag: str):
    value = f"SENTINEL_{tag}_{setting.key}"
    return {"map": {value: value}, "list": [value], "number": 424242, "integer": 424242, "boolean": True}.get(
        setting.type, setting.choices[-1] if setting.type == "select" else value)


@per_device_manifest
def test_secret_settings_never_reach_the_bundle(manifest):
    stored = {s.key: _sentinel(s, "SECRET" if s.secret else "PUBLIC") for s in manifest.settings}
    bundle = _bundle(manifest, stored)
    assert "SENTINEL_SECRET" not in bundle
    settings = _config_object(bundle)["destinations"][0]["settings"]
    for s in manifest.settings:
        if s.applies_to("device") and not s.secret:
            assert settings[s.key] == stored[s.key]


@pytest.mark.parametrize("key", ["track_initial_page", "track_all_pages", "track_named_pages",
                                 "track_categorized_pages", "group_key", "region"])
def test_a_shared_idea_has_one_label_and_type_everywhere(key):
    found = {m.slug: m.setting(key) for m in CATALOG if m.setting(key) is not None}
    assert len(found) >= 2, f"{key} is meant to be shared"
    assert len({(s.label, s.type) for s in found.values()}) == 1, {slug: (s.label, s.type) for slug, s in found.items()}


def test_admin_api_refuses_to_enable_a_device_loader_without_its_vendor_id(client):
    """The bundle never carries a half-configured loader: enabling without the ID is a 422 naming it."""
    source = client.post("/api/v1/sources", json={"name": "Half configured"}).json()
    for manifest in DEVICE:
        required = sorted(s.key for s in manifest.settings if s.required and s.applies_to("device"))
        body = {"slug": manifest.slug, "mode": "device", "enabled": True, "settings": {}}
        response = client.post(f"/api/v1/sources/{source['id']}/destinations", json=body)
        assert response.status_code == 422, (manifest.slug, response.text)
        error = response.json()
        assert error["code"] and error["message"]
        assert sorted(e["field"] for e in error["errors"]) == [f"settings.{k}" for k in required]
        # Saved as a disabled draft it is fine, and stays out of the bundle.
        body["enabled"] = False
        assert client.post(f"/api/v1/sources/{source['id']}/destinations", json=body).status_code == 201

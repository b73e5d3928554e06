"""Segment's settings document (``GET /v1/projects/{writeKey}/settings``) for this server.

analytics-next reads ``integrations["Segment.io"]`` to find the collector (so its events come here)
and loads each ``remotePlugins`` entry's script, then calls ``window[libraryName](settings)``.
Our entries point at the device-mode loaders wrapped in analytics-next's plugin interface
(``js_templates/plugin.js.j2``). Under ``integrations`` there is ``Segment.io`` and, for each plugin
whose destination needs consent, an entry holding only ``consentSettings``: with no ``type`` or
browser ``componentTypes`` analytics-next does not fetch a classic ``.dynamic.js.gz`` integration
for it (we serve none), and ``@segment/analytics-consent-tools`` reads the plugin's categories
there (by ``creationName``). The top-level ``consentSettings`` is Segment's too; both appear only
once some enabled destination has categories. Settings are ``public_settings(...)`` only (see
``server.cdn.bundles.destination_config``); consent categories are public.

A device-mode destination's filters become ``middlewareSettings.routingRules`` keyed by its
``creationName`` (server/cdn/routing_rules.py): analytics-next then runs them with its tsub
middleware before the plugin. Device-mode conditions are public (they are in bundles too); cloud-mode
filters never appear here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from server.cdn.bundles import build_plugin, destination_config, device_destinations, plugin_library
from server.cdn.routing_rules import Untranslatable, routing_rules
from server.catalog import CONSENT_KEY, Catalog, public_settings
from server.config import Config


def plugin_url(config: Config, slug: str) -> str:
    built = build_plugin(slug)
    return f"{config.origin}{config.bundle_path}/plugins/{slug}.{built.hash}.js"


def consent_settings(catalog: Catalog, destinations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Segment's top-level ``consentSettings`` over the enabled destinations of both modes, or None
    when none has categories (consent not set up: analytics-next and its consent tools behave as
    before). A destination without categories (the warehouse among them) is "unmapped": it needs
    every event, so analytics-next must keep sending to us whatever the visitor refuses."""
    categories: list[str] = []
    unmapped = False
    for row in destinations:
        manifest = catalog.get(row["slug"])
        if not row.get("enabled") or manifest is None or row.get("mode") not in manifest.modes:
            continue
        own = public_settings(manifest, row.get("settings") or {}, row["mode"]).get(CONSENT_KEY) or []
        unmapped = unmapped or not own
        categories += [c for c in own if c not in categories]
    return {"allCategories": categories, "hasUnmappedDestinations": unmapped} if categories else None


def device_routing_rules(name: str, filters: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The destination's filters as routing rules, or None when one of them has no exact tsub
    form (docs/filters.md lists those; a partial list would change what the others see): then our
    plugin file applies the whole list itself, with the bundle's interpreter (js_templates/filters.js)."""
    try:
        return routing_rules(name, filters)
    except Untranslatable:
        return None


def settings_document(config: Config, catalog: Catalog, source: dict[str, Any]) -> dict[str, Any]:
    origin = urlsplit(config.origin)
    api_host = origin.netloc + config.collector_prefix
    integrations: dict[str, Any] = {
        "Segment.io": {
            "apiKey": source["write_key"],
            "apiHost": api_host,
            "protocol": origin.scheme,
            "unbundledIntegrations": [],
            "addBundledMetadata": True,
            "maybeBundledConfigIds": {},
        }
    }
    plugins, names, rules = [], set(), []
    for manifest, row in device_destinations(catalog, source["destinations"]):
        dest = destination_config(manifest, row)
        name = manifest.name if manifest.name not in names else f"{manifest.name} {row['id']}"
        names.add(name)
        meta = {"id": dest["id"], "slug": dest["slug"], "name": dest["name"], "names": dest["names"]}
        own_rules = device_routing_rules(name, row.get("filters"))
        if own_rules is None:
            meta["filters"] = dest["filters"]
        else:
            rules += own_rules
        plugins.append({
            "name": name,
            "creationName": name,
            "libraryName": plugin_library(manifest.slug),
            "url": plugin_url(config, manifest.slug),
            "settings": {**dest["settings"], "__switchboard": meta},
        })
        if dest["settings"].get(CONSENT_KEY):
            integrations[name] = {"consentSettings": {"categories": dest["settings"][CONSENT_KEY]}}
    document: dict[str, Any] = {
        "integrations": integrations,
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {"routingRules": rules} if rules else {},
        "enabledMiddleware": {},
        # sampleRate 0: analytics-next would otherwise post its own metrics to api.segment.io.
        "metrics": {"sampleRate": 0, "host": api_host},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": plugins,
    }
    consent = consent_settings(catalog, source["destinations"])
    if consent is not None:
        document["consentSettings"] = consent
    return document

"""Segment's settings document (``GET /v1/projects/{writeKey}/settings``) for this server.

analytics-next reads ``integrations["Segment.io"]`` to find the collector (so its events come here)
and loads each ``remotePlugins`` entry's script, then calls ``window[libraryName](settings)``.
Our entries point at the device-mode loaders wrapped in analytics-next's plugin interface
(``js_templates/plugin.js.j2``). Only ``Segment.io`` is listed under ``integrations``: any other
key would make analytics-next fetch a classic ``.dynamic.js.gz`` integration we do not serve.
Settings are ``public_settings(...)`` only (see ``server.bundles.destination_config``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from server.bundles import build_plugin, destination_config, device_destinations, plugin_library
from server.catalog import Catalog
from server.config import Config


def plugin_url(config: Config, slug: str) -> str:
    built = build_plugin(slug)
    return f"{config.origin}{config.bundle_path}/plugins/{slug}.{built.hash}.js"


def settings_document(config: Config, catalog: Catalog, source: dict[str, Any]) -> dict[str, Any]:
    origin = urlsplit(config.origin)
    api_host = origin.netloc + config.collector_prefix
    plugins, names = [], set()
    for manifest, row in device_destinations(catalog, source["destinations"]):
        dest = destination_config(manifest, row)
        name = manifest.name if manifest.name not in names else f"{manifest.name} {row['id']}"
        names.add(name)
        meta = {"id": dest["id"], "slug": dest["slug"], "name": dest["name"], "names": dest["names"]}
        plugins.append({
            "name": name,
            "creationName": name,
            "libraryName": plugin_library(manifest.slug),
            "url": plugin_url(config, manifest.slug),
            "settings": {**dest["settings"], "__switchboard": meta},
        })
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": source["write_key"],
                "apiHost": api_host,
                "protocol": origin.scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        # sampleRate 0: analytics-next would otherwise post its own metrics to api.segment.io.
        "metrics": {"sampleRate": 0, "host": api_host},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": plugins,
    }

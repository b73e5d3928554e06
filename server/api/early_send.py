"""Whether the snippet may send a source's first events itself, and how the bundle would mark them.

Shared by the bundle plane (server/cdn/snippet.py renders the snippet's early send on or off) and
the collector (server/ingest/early.py expands the snippet's compact early send into the bundle's
event), so that both decide from the same source config by the same rule:

- no early send for a disabled source, or one with an enabled destination that has consent
  categories or filters (something in the browser could change or hold back the event);
- otherwise ``(library name, core version, the device-mode destinations' names, those that take
  the initial page)``: what the bundle writes into ``context.library`` and into ``integrations``
  ``{<name>: false}`` / ``_metadata.bundled`` for the destinations it serves in the browser.
"""

from __future__ import annotations

from typing import Any

from server.api import library_name
from server.catalog import Catalog

# The browser core's version (context.library.version; js_templates/core/40-analytics.js VERSION).
CORE_VERSION = "1.0.0"

Facts = tuple[str, str, tuple[str, ...], tuple[str, ...]]


def early_facts(catalog: Catalog, source: dict[str, Any] | None) -> Facts | None:
    """The source's early-send facts (above), or None when its first events must wait for the bundle.
    A device-mode row counts when its destination runs in the browser (``device`` in the manifest's
    modes; the server does not start unless each has its loader, server/cdn/bundles.check_templates)."""
    if not source or not source.get("enabled", True):
        return None
    rows = source.get("destinations") or []
    for row in rows:
        if row.get("enabled") and (row.get("filters") or (row.get("settings") or {}).get("consent_categories")):
            return None
    device = []
    for row in rows:
        manifest = catalog.get(row["slug"])
        if row.get("enabled") and row.get("mode") == "device" and manifest is not None and "device" in manifest.modes:
            device.append((manifest.name, (row.get("settings") or {}).get("track_initial_page") is not False))
    names = tuple(sorted({name for name, _ in device}))
    initial = tuple(sorted({name for name, takes in device if takes}))
    return library_name.effective(source.get("library_name")), CORE_VERSION, names, initial

"""Which cloud destinations get an event, and the translator of each slug.

A destination gets an event when: its source is enabled; it is enabled and in cloud mode; its
slug has a ``cloud.py`` translator (the warehouse never does: it reads the log itself); the
manifest's cloud ``methods`` include the event's type; and the event's ``integrations`` option
allows it; and the visitor consented to every one of its ``consent_categories``.
``integrations`` follows Segment: ``All`` (default true) is the default for every destination; a
key equal to the destination's name or one of its aliases overrides it. A ``false`` there also
marks an event the browser already delivered in device mode. Consent follows Segment too
(docs/consent.md): an event whose ``context.consent.categoryPreferences`` is missing is not gated.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

from server.catalog import CONSENT_KEY, Catalog, Manifest

SKIPPED_SLUGS = frozenset({"warehouse"})


@functools.lru_cache(maxsize=None)
def translator(slug: str) -> ModuleType | None:
    """``server.destinations.<slug>.cloud``, or None when the slug has no cloud translator."""
    if slug in SKIPPED_SLUGS:
        return None
    name = f"server.destinations.{slug}.cloud"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def integration_allows(event: dict[str, Any], manifest: Manifest) -> bool:
    options = event.get("integrations")
    if not isinstance(options, dict):
        return True
    for name in manifest.integration_names:
        if name in options:
            return options[name] is not False
    return options.get("All", True) is not False


def consent_allows(event: dict[str, Any], destination: dict[str, Any]) -> bool:
    """Every category the destination needs is exactly ``true`` in the event's preferences.

    No ``categoryPreferences`` at all (server-side SDKs, clients that know nothing of consent)
    means "not gated", as Segment documents. One that is there but not an object grants nothing:
    a client that sends consent is gated by it, and a malformed answer is not a yes.
    """
    needed = (destination.get("settings") or {}).get(CONSENT_KEY)
    if not needed:
        return True
    context = event.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    preferences = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if preferences is None:
        return True
    return isinstance(preferences, dict) and all(preferences.get(name) is True for name in needed)


def wants(event_type: str, destination: dict[str, Any], catalog: Catalog) -> Manifest | None:
    """The manifest if this destination could take an event of this type (before ``integrations``)."""
    if not destination["enabled"] or destination["mode"] != "cloud":
        return None
    manifest = catalog.get(destination["slug"])
    if manifest is None or translator(manifest.slug) is None:
        return None
    if event_type not in manifest.methods.get("cloud", ()):
        return None
    return manifest


def route(
    event: dict[str, Any], event_type: str, source_enabled: bool, destinations: list[dict[str, Any]], catalog: Catalog
) -> list[int]:
    """Ids of the destinations (all of one source) that should receive ``event``.

    Each destination is a dict with ``id``, ``slug``, ``mode``, ``enabled`` and ``settings``.
    """
    if not source_enabled:
        return []
    chosen = []
    for destination in destinations:
        manifest = wants(event_type, destination, catalog)
        if manifest is not None and integration_allows(event, manifest) and consent_allows(event, destination):
            chosen.append(destination["id"])
    return chosen

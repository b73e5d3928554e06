"""Which cloud destinations get an event, and the translator of each slug.

A destination gets an event when: its source is enabled; it is enabled and in cloud mode; its
slug has a ``cloud.py`` translator (the warehouse never does: it reads the log itself); the
manifest's cloud ``methods`` include the event's type; the event's ``integrations`` option allows
it; and the visitor consented to every one of its ``consent_categories`` (both rules, Segment's,
live in ``server/rules.py``, shared with the debugger). A ``false`` in ``integrations`` also marks
an event the browser already delivered in device mode.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

from server.catalog import Catalog
from server.rules import why_not_routed

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
        if destination["mode"] != "cloud":
            continue
        manifest = catalog.get(destination["slug"])
        if manifest is None or translator(manifest.slug) is None:
            continue
        if why_not_routed(event, event_type, destination, manifest) is None:
            chosen.append(destination["id"])
    return chosen

"""Destination manifests, one folder per destination slug; see server/catalog.py."""

from __future__ import annotations

import functools
import importlib.util


@functools.lru_cache(maxsize=None)
def has_cloud_translator(slug: str) -> bool:
    """Whether ``server/destinations/<slug>/cloud.py`` exists (without importing it): only such
    destinations get delivery jobs (the warehouse reads the event log itself)."""
    try:
        return importlib.util.find_spec(f"server.destinations.{slug}.cloud") is not None
    except (ModuleNotFoundError, ValueError):
        return False

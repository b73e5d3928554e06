"""What the web app and the CLI show of the bundle plane (exported by name from ``server.cdn``):
the snippet to paste, and the bundle as it is served now."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from server.cdn.snippet import bundle_url, early_send, render_snippet
from server.config import Config
from server.store import workspace


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def snippet_html(config: Config, write_key: str, engine=None, catalog=None) -> str:
    """The snippet a site pastes into its <head>, with its <script> tags. Given the store and the
    catalog, it sends the first events itself when the source allows it (``early_send``); it
    reads the store, so call it from a thread."""
    early = None
    if engine is not None and catalog is not None:
        early = early_send(config, catalog, workspace.public_config(engine, write_key))
    return "<script>\n" + render_snippet(config, write_key, early) + "\n</script>"


async def bundle_info(app, write_key: str) -> dict[str, Any] | None:
    """The bundle as the CDN plane serves it now (built if needed), or None when that plane does
    not run in this app."""
    cache = getattr(app.state, "bundle_cache", None)
    if cache is None:
        return None
    entry = await cache.get(write_key)
    url = bundle_url(app.state.config, write_key)
    bundle = getattr(entry, "bundle", None)
    if bundle is None:  # Missing: unknown or disabled source
        return {"served": False, "reason": getattr(entry, "reason", "unknown"), "url": url}
    catalog = app.state.catalog
    return {
        "served": True,
        "url": url,
        "immutable_url": url.replace("analytics.min.js", f"analytics.{bundle.hash}.min.js"),
        "version": bundle.version,
        "size": len(bundle.body),
        "gzip_size": len(bundle.gzip),
        "brotli_size": len(bundle.br),
        "etag": bundle.etag("identity"),
        "loaders": [catalog.get(s).name if catalog.get(s) else s for s in bundle.loaders],
        "built_at": _iso(getattr(bundle, "built_at", None)),
        "version_saved_at": await run_in_threadpool(_version_saved_at, app.state.engine, write_key, bundle.version),
    }


def _version_saved_at(engine, write_key: str, version: int) -> str | None:
    current = workspace.public_config(engine, write_key)
    return _iso(current["version_created_at"]) if current and current["settings_version"] == version else None

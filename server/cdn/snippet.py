"""The snippet a site pastes: Segment's official v5 stub, pointed at this server's bundle.

``render_snippet(config, write_key, early)`` returns the JavaScript (without ``<script>`` tags); the
CLI and the web app wrap it, ``GET /snippet/{writeKey}.js`` serves it. The bundle URL keeps the
scheme of ``SWITCHBOARD_PUBLIC_URL`` (self-hosted installs often start on plain http).

``early`` (from ``early_send(...)``) lets the snippet send the first page and track calls itself,
before the bundle arrives (docs/bundle.md, "First event"). It is rendered per source, and only for
a source where nothing server-side could change the event in the browser: no destination with
consent categories, none with filters. None (the default) keeps every call waiting for the bundle.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from server.api import library_name
from server.catalog import Catalog
from server.cdn.bundles import CORE_VERSION, collector_url, device_destinations, js_env, minify
from server.config import Config


def bundle_url(config: Config, write_key: str) -> str:
    return f"{config.origin}{config.bundle_path}/{write_key}/analytics.min.js"


def early_send(config: Config, catalog: Catalog, source: dict[str, Any] | None) -> tuple | None:
    """What the snippet needs to build the bundle's event itself, or None when it must not:
    (collector URL, library name, core version, every device-mode destination's name, those
    that take the initial page). The names are what the bundle writes into ``integrations`` and
    ``_metadata.bundled`` for destinations it serves in the browser."""
    if not source or not source.get("enabled", True):
        return None
    rows = source.get("destinations") or []
    for row in rows:
        if row.get("enabled") and (row.get("filters") or (row.get("settings") or {}).get("consent_categories")):
            return None
    device = device_destinations(catalog, rows)
    names = sorted({m.name for m, _ in device})
    initial = sorted({m.name for m, r in device if (r.get("settings") or {}).get("track_initial_page") is not False})
    return (collector_url(config), library_name.effective(source.get("library_name")), CORE_VERSION,
            tuple(names), tuple(initial))


EDITABLE = "// SITE-EDITABLE:"


@lru_cache(maxsize=1024)
def render_snippet(config: Config, write_key: str, early: tuple | None = None) -> str:
    """The snippet as served and printed: minified (rjsmin; the template is written small), with
    the two lines a site may edit (``analytics.load(...)``, ``analytics.page()``) on lines of
    their own, as in the official snippet. tests/test_snippet.py holds it under 1.5 KB."""
    data = None if early is None else [early[0], early[1], early[2], list(early[3]), list(early[4])]
    text = js_env().get_template("snippet.js.j2").render(
        origin=config.origin, write_key=write_key, bundle_path=config.bundle_path + "/", early=data,
    )
    head, _, tail = text.partition(EDITABLE)
    lines = [line.strip() for line in tail.splitlines()[1:] if line.strip()]
    return minify(head).strip() + "\n" + "\n".join(lines)

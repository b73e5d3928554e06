"""The snippet a site pastes: Segment's official v5 stub, pointed at this server's bundle.

``render_snippet(config, write_key, early)`` returns the JavaScript (without ``<script>`` tags); the
CLI and the web app wrap it, ``GET /snippet/{writeKey}.js`` serves it. The bundle URL keeps the
scheme of ``SWITCHBOARD_PUBLIC_URL`` (self-hosted installs often start on plain http).

``early`` (from ``early_send(...)``: the collector's prefix) lets the snippet send the first page
and track calls itself, to the collector's ``/e`` under that prefix (the snippet gets the whole
path), before the bundle arrives (docs/bundle.md, "First event"). It is rendered per source, and
only for a source where nothing server-side could change the event in the browser: no destination
with consent categories, none with filters. None (the default) keeps every call waiting for the
bundle.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from server.api.early_send import early_facts
from server.catalog import Catalog
from server.cdn.bundles import js_env, minify
from server.config import Config


def bundle_url(config: Config, write_key: str) -> str:
    return f"{config.origin}{config.bundle_path}/{write_key}/analytics.min.js"


def early_send(config: Config, catalog: Catalog, source: dict[str, Any] | None) -> str | None:
    """The collector's prefix (under the snippet's ``_cdn``, the public origin) whose ``/e`` the
    snippet sends the first events to, or None when it must not (server/api/early_send.py decides; the collector
    expands the snippet's compact early send with the same facts)."""
    return None if early_facts(catalog, source) is None else config.collector_prefix


EDITABLE = "// SITE-EDITABLE:"


@lru_cache(maxsize=1024)
def render_snippet(config: Config, write_key: str, early: str | None = None) -> str:
    """The snippet as served and printed: minified (rjsmin; the template is written small), with
    the two lines a site may edit (``analytics.load(...)``, ``analytics.page()``) on lines of
    their own, as in the official snippet. tests/test_snippet.py holds it within 1,900 bytes (the
    issue's 1.5 KB is not reached: docs/bundle.md, "First event", says where the bytes go)."""
    text = js_env().get_template("snippet.js.j2").render(
        origin=config.origin, write_key=write_key, bundle_path=config.bundle_path + "/", early=early and early + "/e",
    )
    head, _, tail = text.partition(EDITABLE)
    lines = [line.strip() for line in tail.splitlines()[1:] if line.strip()]
    return minify(head).strip() + "\n" + "\n".join(lines)

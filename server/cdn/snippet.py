"""The snippet a site pastes: Segment's official v5 stub, pointed at this server's bundle.

``render_snippet(config, write_key)`` returns the JavaScript (without ``<script>`` tags); the CLI
and the web app wrap it, ``GET /snippet/{writeKey}.js`` serves it. The bundle URL keeps the scheme
of ``SWITCHBOARD_PUBLIC_URL`` (self-hosted installs often start on plain http).
"""

from __future__ import annotations

from functools import lru_cache

from server.cdn.bundles import js_env
from server.config import Config


def bundle_url(config: Config, write_key: str) -> str:
    return f"{config.origin}{config.bundle_path}/{write_key}/analytics.min.js"


@lru_cache(maxsize=1024)
def render_snippet(config: Config, write_key: str) -> str:
    return js_env().get_template("snippet.js.j2").render(
        origin=config.origin, write_key=write_key, bundle_url=bundle_url(config, write_key),
    ).strip()

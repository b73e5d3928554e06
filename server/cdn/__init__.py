"""The bundle plane: the per-write-key bundle (render, minify, compress, cache, ETag), the
analytics-next plugins, Segment's settings document and the snippet.

Modules: ``bundles`` (render) · ``bundle_cache`` (build once per settings version) ·
``settings_document`` · ``snippet`` · ``routes`` (the HTTP side) · ``readouts`` · ``publish`` (the
files for nginx/a CDN under ``SWITCHBOARD_PUBLISH_DIR``, started by ``startup``).

The door: ``routes``, ``startup``, ``shutdown`` and the read-outs ``snippet_html`` (CLI, web
app, demo page) and ``bundle_info`` (web app).
"""

from server.cdn.readouts import bundle_info, snippet_html
from server.cdn.routes import routes, shutdown, startup
from server.cdn.snippet import render_snippet

__all__ = ["routes", "startup", "shutdown", "snippet_html", "bundle_info", "render_snippet"]

"""The bundle plane: the per-write-key bundle (render, minify, compress, cache, ETag), the
analytics-next plugins, Segment's settings document and the snippet.

Modules: ``bundles`` (render) · ``bundle_cache`` (build once per settings version) ·
``settings_document`` · ``snippet`` · ``routes`` (the HTTP side).
"""

from server.cdn.routes import routes, shutdown, startup

__all__ = ["routes", "startup", "shutdown"]

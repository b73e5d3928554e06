"""The snippet as sites pasted it before its early send took its current form (the template as it
was, snippet_earlier.js.j2): pasted copies keep running for years, so the collector's /e and the
bundle must keep taking its early sends (``[..., bpc, {messageId, timestamp, userId}, ...]``,
``bpc.e`` an object). tests/test_snippet.py and e2e/test_first_event.py run it."""

from __future__ import annotations

from pathlib import Path

from server.cdn.bundles import js_env, minify

TEMPLATE = Path(__file__).with_name("snippet_earlier.js.j2")


def render_earlier(origin: str, write_key: str, early: str | None, bundle_path: str = "/analytics.js/v1") -> str:
    """As render_snippet rendered it then (``early``: the collector's prefix; ``/e`` was added in
    the snippet), minified whole."""
    text = js_env().from_string(TEMPLATE.read_text()).render(
        origin=origin, write_key=write_key, bundle_path=bundle_path + "/", early=early)
    return minify(text)

"""The snippet: Segment's official v5 stub shape, run in Node with a minimal DOM, pointed at our
bundle with the configured scheme and path."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from server.cli import snippet_text
from server.config import Config
from server.cdn.snippet import render_snippet

OFFICIAL = Path(__file__).resolve().parent.parent / "e2e" / "node_modules" / "@segment" / "snippet" / "dist" / "max.template.js"

# Run the snippet with just enough DOM: record the inserted <script> and the queued calls.
HARNESS = r"""
const inserted = [];
global.location = {pathname: "/p", href: "http://site.test/p?q=1", search: "?q=1"};
global.document = {
  title: "T", referrer: "http://ref.test/",
  querySelector: () => ({getAttribute: () => "http://site.test/canonical"}),
  createElement: () => ({setAttribute(k, v) { this[k] = v; }}),
  getElementsByTagName: () => [{parentNode: {insertBefore: (el) => inserted.push(el)}}],
};
global.window = global;
eval(require("fs").readFileSync(0, "utf8"));
analytics.track("Clicked", {a: 1});
const before = inserted.length;  // the bundle's <script> goes in once the snippet's script has run
setTimeout(() => console.log(JSON.stringify({queue: analytics.slice(), src: inserted.map(s => s.src), key: inserted.map(s => s["data-global-segment-analytics-key"]),
  writeKey: analytics._writeKey, cdn: analytics._cdn, version: analytics.SNIPPET_VERSION, methods: analytics.methods, before})));
"""


def run(js: str) -> dict:
    result = subprocess.run(["node", "-e", HARNESS], input=js, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


def test_snippet_queues_calls_with_buffered_page_context_and_loads_our_bundle():
    config = Config(public_url="http://analytics.example.test:8080", bundle_path="/t/js")
    out = run(render_snippet(config, "KEY123"))
    assert out["src"] == ["http://analytics.example.test:8080/t/js/KEY123/analytics.min.js"]
    assert out["key"] == ["analytics"] and out["before"] == 0
    assert out["writeKey"] == "KEY123" and out["cdn"] == "http://analytics.example.test:8080"
    assert out["version"] == "5.2.0"
    bpc = {"__t": "bpc", "c": "http://site.test/canonical", "p": "/p", "u": "http://site.test/p?q=1",
           "s": "?q=1", "t": "T", "r": "http://ref.test/"}
    assert out["queue"] == [["page", bpc], ["track", "Clicked", {"a": 1}, bpc]]


def test_methods_match_the_official_snippet_plus_the_consent_calls():
    official = OFFICIAL.read_text()
    block = re.search(r"analytics\.methods = \[(.*?)\]", official, re.S).group(1)
    names = re.findall(r'\\"(\w+)\\"|"(\w+)"', block)
    expected = [a or b for a, b in names] + ["setConsent", "getConsent"]
    assert run(render_snippet(Config(), "K"))["methods"] == expected


def test_https_origin_keeps_https_and_values_are_script_safe():
    text = render_snippet(Config(public_url="https://a.example.com"), "k</script>")
    assert '"https://a.example.com/analytics.js/v1/k\\u003c/script\\u003e/analytics.min.js"' in text
    assert "</script" not in text


def test_cli_prints_the_snippet_inline():
    text = snippet_text(Config(public_url="https://a.example.com"), "KEY9")
    assert text.startswith("<script>\n(function () {") and text.endswith("</script>")
    assert '"https://a.example.com/analytics.js/v1/KEY9/analytics.min.js"' in text

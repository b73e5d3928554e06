"""The harness of the differential test (e2e/test_differential.py): one page script, run unchanged
in Chromium against Segment's analytics-next (npm, its standalone CDN build) and against our
bundle, and what each one sends reduced to comparable, flat form.

How a run works. The page lives on http://shop.localhost (a secure context, routed by Playwright,
never on the network). It pastes the official ``@segment/snippet`` (rendered by node from the npm
package, ``load: false``), so the page script calls ``analytics.load(KEY, {...})`` itself. The
snippet asks for ``https://cdn.segment.com/analytics.js/v1/<key>/analytics.min.js``; that URL is
routed to analytics-next's ``dist/umd/standalone.js`` (its lazy chunks to the files next to it and
its settings request to our server's settings document) or to our server's bundle for the key.
Both libraries then post to the same real collector (``switchboard serve`` on 127.0.0.1), each
into its own source, and the events are read back from the store. Any other host is aborted, so
no packet leaves the machine.

Comparison. Events are grouped by ``type:event-or-name`` and paired in arrival order; every leaf
is compared by path. Values that are random by nature (message ids, anonymous ids, times) are
replaced by the *shape* they have (``<uuid>``, ``<iso-ms>``, ``ajs-next-<hex32>``...), so a
different id format still shows up as a difference while the value does not.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from bundle_site import GTAG_STUB, served
from server.store import events, workspace

E2E = Path(__file__).resolve().parent
NEXT_DIST = E2E / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
SITE = "http://shop.localhost"
CDN = "https://cdn.segment.com"
LIBS = ("ours", "next")
GA4 = {"slug": "google_analytics_4", "settings": {"measurement_id": "G-DIFF1", "api_secret": "x"}}

# What the page script may use besides `analytics`: K (the write key), out(key, value) to record
# what the API returned, done() once its calls are made (a final "__end__" track follows, whose
# arrival tells the harness that everything before it has been sent), and json(value).
PAGE_HELPERS = """
window.__out = {}; window.__done = false;
function json(v) { try { return JSON.parse(JSON.stringify(v === undefined ? null : v)); } catch (x) { return String(x); } }
function out(k, v) { window.__out[k] = json(v); }
function done(delay) {
  window.analytics.ready(function () {
    setTimeout(function () { window.analytics.track("__end__"); window.__done = true; }, delay || 50);
  });
}
window.addEventListener("error", function (e) { (window.__out.__pageErrors = window.__out.__pageErrors || []).push(String(e.message)); });
"""


@dataclass
class Scenario:
    name: str
    js: str                          # the page script (runs after the snippet)
    query: str = ""                  # the page URL's query string
    device: bool = False             # the source has Google Analytics 4 in device mode (gtag stub)
    end: bool = True                 # the script calls done(); False: wait a fixed time instead
    library_name: str | None = "analytics.js"   # our source's library_name setting
    drive: Callable[..., None] | None = None   # (page, run, stored()) Python steps; runs each library in turn
    wait_ms: int = 1500              # settle time when end is False
    expect: tuple[str, ...] = ()     # event names both libraries must have sent (a diff of two blanks is no proof)


@dataclass
class Run:
    events: list[dict] = field(default_factory=list)
    out: dict = field(default_factory=dict)
    cookies: list[dict] = field(default_factory=list)
    storage: dict = field(default_factory=dict)
    gtag: list = field(default_factory=list)


def render_official_snippet(write_key: str) -> str:
    """The official snippet from npm, as a site owner pastes it, with load and page left out."""
    js = ("process.stdout.write(require('@segment/snippet').max("
          "{apiKey: '__KEY__', host: 'cdn.segment.com', load: false, page: false}))")
    text = _snippet_template(js)
    return text.replace("__KEY__", write_key)


_TEMPLATE: dict[str, str] = {}


def _snippet_template(js: str) -> str:
    if js not in _TEMPLATE:
        _TEMPLATE[js] = subprocess.run(["node", "-e", js], cwd=E2E, check=True, capture_output=True,
                                       text=True, timeout=60).stdout
    return _TEMPLATE[js]


def page_html(write_key: str, script: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Diff page</title>
<script>{PAGE_HELPERS}</script>
<script>{render_official_snippet(write_key)}</script>
<script>var K = {json.dumps(write_key)};
{script}
</script></head><body><a id="link" href="{SITE}/next.html">next</a></body></html>"""


def _fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (loopback only)
            return r.status, r.read(), r.headers.get("Content-Type", "application/octet-stream")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "text/plain")


# Every run's browser context has this time zone, whatever the host's. Ours reads it from Temporal
# where Chromium has it, analytics-next from Intl; on a host set to "GMT" they name it differently
# ("UTC" against "+00:00"), for any IANA zone alike (docs/bundle-differential.md).
ZONE = "Europe/Berlin"


def is_loopback(url: str) -> bool:
    return url.startswith(("http://127.0.0.1:", "http://localhost:"))


class DiffSite:
    """One live server, two sources per scenario (one per library), runs in fresh browser contexts."""

    def __init__(self, browser, engine, server_url: str):
        self.browser, self.engine, self.server = browser, engine, server_url
        self.standalone = (NEXT_DIST / "standalone.js").read_bytes()

    def source(self, scenario: Scenario, lib: str) -> dict:
        source = workspace.create_source(self.engine, f"{scenario.name} {lib}")
        if scenario.device:
            workspace.add_destination(self.engine, source["id"], mode="device", enabled=True, **GA4)
            served(self.engine, source)  # the server may have seen the source before its destination
        if lib == "ours" and scenario.library_name:
            workspace.update_source(self.engine, source["id"], library_name=scenario.library_name)
            # This process is not the server's: the server learns of the change by its freshness
            # check (within a second), so wait until its bundle carries the new version.
            self._wait_for_bundle(source["write_key"], f'"libraryName":{json.dumps(scenario.library_name)}')
        return source

    def _wait_for_bundle(self, write_key: str, needle: str, limit: float = 5.0) -> None:
        url = f"{self.server}/analytics.js/v1/{write_key}/analytics.min.js"
        started = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if needle in answer.read().decode():
                        return
            except OSError:
                pass  # a 404 until the server knows the key
            if time.monotonic() - started > limit:
                raise AssertionError(f"the server did not serve {needle} for {write_key} within {limit} s")
            time.sleep(0.05)

    def routes(self, context, lib: str, html: str) -> None:
        # Registered first = matched last: anything not routed below and not loopback is aborted.
        context.route(lambda url: not is_loopback(url), lambda route: route.abort())
        context.route(f"{SITE}/**", lambda route: route.fulfill(
            status=200, body=html if "/diff.html" in route.request.url else "<!doctype html><p>next</p>",
            headers={"Content-Type": "text/html"}))
        context.route("https://www.googletagmanager.com/**", lambda route: route.fulfill(
            status=200, body=GTAG_STUB, headers={"Content-Type": "application/javascript"}))

        def cdn(route):
            path = route.request.url.removeprefix(CDN).split("?")[0]
            if lib == "next" and path.endswith("/analytics.min.js"):
                return route.fulfill(status=200, body=self.standalone, headers={"Content-Type": "application/javascript"})
            if lib == "next" and path.startswith("/analytics-next/bundles/"):
                file = NEXT_DIST / path.rsplit("/", 1)[1]
                if file.is_file():
                    return route.fulfill(status=200, body=file.read_bytes(), headers={"Content-Type": "application/javascript"})
                return route.abort()
            status, body, ctype = _fetch(self.server + path)   # our bundle, or the settings document
            route.fulfill(status=status, body=body, headers={"Content-Type": ctype, "Access-Control-Allow-Origin": "*"})

        context.route(f"{CDN}/**", cdn)

    def run_pair(self, scenario: Scenario, timeout: float = 15.0) -> tuple[Run, Run]:
        """(ours, analytics-next). Both pages load and run at the same time (each in its own fresh
        browser context: no cookies or storage shared), except scenarios with Python steps."""
        if scenario.drive:
            return self._run_all(scenario, ["ours"], timeout)[0], self._run_all(scenario, ["next"], timeout)[0]
        ours, theirs = self._run_all(scenario, list(LIBS), timeout)
        return ours, theirs

    def _run_all(self, scenario: Scenario, libs: list[str], timeout: float) -> list[Run]:
        opened = []
        try:
            for lib in libs:
                source = self.source(scenario, lib)
                context = self.browser.new_context(timezone_id=ZONE)
                opened.append((source, context))
                context.grant_permissions(["local-network-access"])
                self.routes(context, lib, page_html(source["write_key"], scenario.js))
                page = context.new_page()
                page.goto(f"{SITE}/diff.html{scenario.query}", wait_until="commit")
            runs = [Run() for _ in libs]
            pages = [c.pages[0] for _, c in opened]
            if scenario.drive:
                scenario.drive(pages[0], runs[0], lambda: self.stored(opened[0][0]["id"]))
            deadline = time.monotonic() + (timeout if scenario.end else scenario.wait_ms / 1000)
            pending = list(range(len(libs)))
            while pending and time.monotonic() < deadline:
                pages[0].wait_for_timeout(50)   # (sync Playwright runs route handlers only inside its calls)
                pending = [i for i in pending if not scenario.end or not self._finished(pages[i], opened[i][0]["id"])]
            assert not pending or not scenario.end, f"{scenario.name}: {[libs[i] for i in pending]} never sent __end__"
            if scenario.end:
                pages[0].wait_for_timeout(150)   # parallel requests: what was sent just before __end__
            for run, page, (source, context) in zip(runs, pages, opened):
                self._collect(run, page, context, source["id"])
            return runs
        finally:
            for _, context in opened:
                context.close()

    def _finished(self, page, source_id: int) -> bool:
        return page.evaluate("() => window.__done === true") and any(e.get("event") == "__end__" for e in self.stored(source_id))

    def _collect(self, run: Run, page, context, source_id: int) -> None:
        run.events = self.stored(source_id)
        run.out.update(page.evaluate("() => window.__out"))
        run.gtag = page.evaluate("() => (window.__gtag || []).filter(function (c) { return c[0] == 'event'; })")
        run.storage = page.evaluate("""() => { var o = {}; for (var i = 0; i < localStorage.length; i++) {
            var k = localStorage.key(i); if (/^ajs_/.test(k)) o[k] = localStorage.getItem(k); } return o; }""")
        run.cookies = [{k: c[k] for k in ("name", "value", "domain", "path", "secure", "sameSite", "httpOnly")}
                       | {"days": round((c["expires"] - time.time()) / 86400) if c["expires"] > 0 else "session"}
                       for c in context.cookies() if c["name"].startswith("ajs_")]

    def stored(self, source_id: int) -> list[dict]:
        return [r["event"] for r in reversed(events.list_events(self.engine, source_id, limit=200))]


# ---------------------------------------------------------------- normalising and comparing

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def shape(value: str) -> str:
    """A random-looking string replaced by its format: uuids, hex runs and digit runs by tokens;
    a time within a day of now by <iso> (fixed past times stay as they are)."""
    if ISO.match(value):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if abs(datetime.now(timezone.utc) - moment) < timedelta(days=1):
            frac = re.search(r"\.(\d+)", value)
            return f"<iso{'.' + str(len(frac.group(1))) if frac else ''}{'Z' if value.endswith('Z') else '+tz'}>"
        return value
    value = UUID.sub("<uuid>", value)
    value = re.sub(r"\b[0-9a-f]{32}\b", "<hex32>", value)
    value = re.sub(r"\d{12,}", "<ms>", value)
    return value


# The server corrects "timestamp" by the client's clock skew (receivedAt - (sentAt - originalTimestamp)):
# its value is noise even for a fixed past time, so only its format counts (originalTimestamp keeps
# what the page gave).
SKEWED = ("timestamp",)


def flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            if k in SKEWED and isinstance(v, str) and ISO.match(v):
                out[f"{prefix}.{k}"] = "<iso" + ("-ms" if re.search(r"\.\d{3}Z$", v) else "") + ">"
                continue
            flatten(v, f"{prefix}.{k}", out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            flatten(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = shape(value) if isinstance(value, str) else value
    return out


def event_key(e: dict) -> str:
    return f"{e.get('type')}:{e.get('event') or e.get('name') or ''}"


def flat_run(run: Run) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    seen: dict[str, int] = {}
    # Paired per type:name in the order the page made the calls (the client's originalTimestamp),
    # not of arrival: analytics-next sends each event in its own request, and those may overtake
    # each other. Calls in the same millisecond are ordered by content, alike for both.
    for e in sorted(run.events, key=lambda e: (str(e.get("originalTimestamp")), json.dumps(e.get("properties") or e.get("traits"), sort_keys=True, default=str))):
        key = event_key(e)
        n = seen[key] = seen.get(key, -1) + 1
        flatten(e, f"events.{key}#{n}", flat)
    flat["events.count"] = len(run.events)
    flatten(run.out, "out", flat)
    flatten(run.gtag, "gtag", flat)
    flatten(run.storage, "localStorage", flat)
    flatten({c["name"]: {k: v for k, v in c.items() if k != "name"} for c in run.cookies}, "cookies", flat)
    return flat


# Set by the server for both alike, or where the two libraries' own schedules differ.
IGNORED = ("*.receivedAt", "*.context.ip")


def diff(ours: Run, theirs: Run) -> dict[str, tuple[Any, Any]]:
    """path → (ours, analytics-next) for every leaf that differs."""
    a, b = flat_run(ours), flat_run(theirs)
    missing = object()
    out = {}
    for path in sorted(set(a) | set(b)):
        if any(matches(p, path) for p in IGNORED):
            continue
        x, y = a.get(path, missing), b.get(path, missing)
        if x != y:
            out[path] = ("<absent>" if x is missing else x, "<absent>" if y is missing else y)
    return out


def matches(pattern: str, text: str) -> bool:
    """``*`` matches anything (also dots and brackets); every other character is literal."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), text, re.S) is not None


def label(path: str, values: tuple) -> str:
    """How a difference reads, and what an accepted pattern may match besides the bare path:
    ``<path>: ours=<json> next=<json>`` (so a pattern can accept one value change only)."""
    ours, theirs = (v if v == "<absent>" else json.dumps(v, sort_keys=True) for v in values)
    return f"{path}: ours={ours} next={theirs}"


def explained(differences: dict[str, tuple], patterns: dict[str, str]) -> tuple[dict, set[str]]:
    """(differences no pattern explains, patterns that matched something). A pattern matches the
    path or the whole label (see ``matches``)."""
    used, left = set(), {}
    for path, values in differences.items():
        text = label(path, values)
        hit = [p for p in patterns if matches(p, path) or matches(p, text)]
        used.update(hit)
        if not hit:
            left[path] = values
    return left, used

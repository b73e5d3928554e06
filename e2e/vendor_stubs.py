"""Recording stand-ins for vendor scripts, and a small harness for device-mode loader tests.

Vendor hosts are unreachable in tests, so each vendor URL is routed (``page.route``) to a stub
that behaves like the real script where it matters to a loader: it takes over the queue stub that
the official snippet installed, replays what was queued there, and from then on records every
call on the vendor's global (``window.mixpanel.calls``, ``window.hj.calls``, ...). A test can
serve a stub at once, hold it back (to make calls before the vendor "arrives") or abort it
(a blocked script).

The harness side: an admin API client for a real ``switchboard serve`` (sources, destinations,
enable/disable), and a page on a made-up site origin that pastes the source's snippet inline, as a
site owner would.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, Route

ADMIN_TOKEN = "e2e-loader-admin-token"
# The test site lives under a path of the server's own origin (routed by the browser, never reaching
# the server): a made-up public origin could not load scripts from loopback (Private Network Access).
SITE_PATH = "/__loader_test_site__"

# ---------------------------------------------------------------- the stubs


@dataclass(frozen=True)
class Stub:
    prefix: str          # every request whose URL starts with this is counted and answered by the stub
    script: str          # JavaScript standing in for the vendor's script
    calls: str           # JS expression: the calls the stub recorded (JSON-able)


# A Proxy answering every method name with a recorder, so stubs need not list the vendor's API.
_RECORDER = """
function sbRecorder(calls, prefix, target) {
  return new Proxy(target, { get: function (t, k) {
    if (k in t || typeof k != "string") return t[k];
    return function () { calls.push([prefix + k].concat([].slice.call(arguments))); };
  }});
}
"""

STUBS: dict[str, Stub] = {
    # gtm.js reads the entries already in the data layer, then replaces its push.
    "google_tag_manager": Stub(
        "https://www.googletagmanager.com/gtm.js",
        """(function () {
  var l = new URL(document.currentScript.src).searchParams.get("l") || "dataLayer";
  var dl = window[l] = window[l] || [];
  dl.calls = dl.slice();
  dl.push = function () {
    for (var i = 0; i < arguments.length; i++) dl.calls.push(arguments[i]);
    return Array.prototype.push.apply(dl, arguments);
  };
  window.google_tag_manager = {};
})();""",
        "window.dataLayer && window.dataLayer.calls",
    ),
    # mixpanel-2-latest: one instance per _i entry, then the calls queued on the stub arrays.
    "mixpanel": Stub(
        "https://cdn.mxpnl.com/",
        _RECORDER + """(function () {
  var stub = window.mixpanel, calls = [];
  var people = sbRecorder(calls, "people.", {});
  var lib = sbRecorder(calls, "", { calls: calls, people: people, __loaded: true, config: null });
  (stub._i || []).forEach(function (i) { calls.push(["init"].concat(i)); lib.config = i[1] || {}; });
  for (var i = 0; i < stub.length; i++) lib[stub[i][0]].apply(lib, stub[i].slice(1));
  (stub.people || []).forEach(function (c) { people[c[0]].apply(people, c.slice(1)); });
  window.mixpanel = lib;
})();""",
        "window.mixpanel && window.mixpanel.calls",
    ),
    # analytics-browser 2: replaces window.amplitude and runs the proxy's {name, args, resolve}
    # queue; Identify/Revenue proxies (objects with _q) become real builders, recorded as [op, ...].
    "amplitude": Stub(
        "https://cdn.amplitude.com/",
        """(function () {
  var proxy = window.amplitude || { _q: [] }, calls = [];
  function builder() {
    var ops = [], b = new Proxy({ ops: ops }, { get: function (t, k) {
      return k in t ? t[k] : function () { ops.push([k].concat([].slice.call(arguments))); return b; };
    }});
    return b;
  }
  function ops(x) { return x.ops || x._q.map(function (c) { return [c.name].concat(c.args); }); }
  var lib = new Proxy({
    calls: calls, runQueuedFunctions: function () {},
    Identify: function () { return builder(); }, Revenue: function () { return builder(); },
    identify: function (i) { calls.push(["identify", ops(i)]); },
    revenue: function (r) { calls.push(["revenue", ops(r)]); }
  }, { get: function (t, k) {
    return k in t || typeof k != "string" ? t[k] : function () { calls.push([k].concat([].slice.call(arguments))); };
  }});
  (proxy._q || []).forEach(function (c) { var r = lib[c.name].apply(lib, c.args); if (c.resolve) c.resolve(r); });
  window.amplitude = lib;
})();""",
        "window.amplitude && window.amplitude.calls",
    ),
    "hotjar": Stub(
        "https://static.hotjar.com/",
        """(function () {
  var q = (window.hj && window.hj.q) || [], calls = [];
  window.hj = function () { calls.push([].slice.call(arguments)); };
  window.hj.calls = calls;
  calls.settings = window._hjSettings;
  q.forEach(function (a) { window.hj.apply(null, a); });
})();""",
        "window.hj && window.hj.calls",
    ),
    "intercom": Stub(
        "https://widget.intercom.io/",
        """(function () {
  var q = (window.Intercom && window.Intercom.q) || [], calls = [];
  var I = function () { calls.push([].slice.call(arguments)); };
  I.calls = calls;
  window.Intercom = I;
  q.forEach(function (a) { I.apply(null, a); });
})();""",
        "window.Intercom && window.Intercom.calls",
    ),
    "crisp": Stub(
        "https://client.crisp.chat/",
        """(function () {
  var q = window.$crisp || [], calls = [];
  window.$crisp = { calls: calls, push: function (c) { calls.push(c); },
    is: function () { return false; }, get: function () {} };
  calls.unshift(["website", window.CRISP_WEBSITE_ID, window.CRISP_RUNTIME_CONFIG || null]);
  q.forEach(function (c) { window.$crisp.push(c); });
})();""",
        "window.$crisp && window.$crisp.calls",
    ),
    "linkedin_insight": Stub(
        "https://snap.licdn.com/",
        """(function () {
  var q = (window.lintrk && window.lintrk.q) || [], calls = [];
  window.lintrk = function (a, b) { calls.push([a, b]); };
  window.lintrk.calls = calls;
  calls.unshift(["partners", (window._linkedin_data_partner_ids || []).slice()]);
  q.forEach(function (c) { window.lintrk(c[0], c[1]); });
})();""",
        "window.lintrk && window.lintrk.calls",
    ),
    # gtag.js (GA4): reads the data layer's gtag() argument lists, then replaces its push.
    "google_analytics_4": Stub(
        "https://www.googletagmanager.com/gtag/js",
        """(function () {
  var dl = window.dataLayer = window.dataLayer || [], rec = dl.ga4 = [];
  function take(a) { rec.push(JSON.parse(JSON.stringify([].slice.call(a)))); }
  dl.forEach(take);
  dl.push = function (a) { take(a); return Array.prototype.push.call(dl, a); };
})();""",
        "window.dataLayer && window.dataLayer.ga4",
    ),
    # fbevents.js: installs callMethod on the fbq stub and drains its queue.
    "meta_pixel": Stub(
        "https://connect.facebook.net/",
        """(function () {
  var f = window.fbq, q = f.queue || [], calls = f.calls = [];
  f.callMethod = function () { calls.push([].slice.call(arguments)); };
  f.queue = [];
  q.forEach(function (a) { f.callMethod.apply(f, a); });
})();""",
        "window.fbq && window.fbq.calls",
    ),
}


@dataclass
class VendorRoutes:
    """Routes every stubbed vendor origin of a context; records each requested URL."""

    requests: dict[str, list[str]] = field(default_factory=dict)
    mode: dict[str, str] = field(default_factory=dict)      # slug -> "serve" | "hold" | "abort"
    held: dict[str, list[Route]] = field(default_factory=dict)

    def install(self, target: BrowserContext | Page) -> "VendorRoutes":
        for slug, stub in STUBS.items():
            target.route(re.compile("^" + re.escape(stub.prefix)), self._handler(slug))
        return self

    def _handler(self, slug: str):
        def handle(route: Route) -> None:
            self.requests.setdefault(slug, []).append(route.request.url)
            how = self.mode.get(slug, "serve")
            if how == "abort":
                route.abort("blockedbyclient")
            elif how == "hold":
                self.held.setdefault(slug, []).append(route)
            else:
                self._serve(slug, route)
        return handle

    @staticmethod
    def _serve(slug: str, route: Route) -> None:
        route.fulfill(status=200, content_type="application/javascript", body=STUBS[slug].script)

    def release(self, slug: str) -> None:
        """Let held requests for ``slug`` through: the vendor script "arrives" now."""
        self.mode[slug] = "serve"
        for route in self.held.pop(slug, []):
            self._serve(slug, route)


def calls(page: Page, slug: str) -> list[Any] | None:
    """What the vendor stub recorded (None while the vendor script has not run)."""
    return page.evaluate(f"() => JSON.parse(JSON.stringify(({STUBS[slug].calls}) || null))")


def wait_calls(page: Page, slug: str, predicate, timeout: float = 10.0) -> list[Any]:
    """Poll the recorded calls until ``predicate(calls)`` holds; return them (or fail with them)."""
    deadline = time.monotonic() + timeout
    while True:
        recorded = calls(page, slug)
        if recorded is not None and predicate(recorded):
            return recorded
        if time.monotonic() > deadline:
            raise AssertionError(f"{slug}: expected calls not recorded; got {json.dumps(recorded)[:2000]}")
        page.wait_for_timeout(25)


# ---------------------------------------------------------------- the workspace and the site


class Workspace:
    """The admin API of a live server (Bearer ADMIN_TOKEN)."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)

    def _ok(self, response: httpx.Response) -> dict:
        assert response.status_code < 300, f"{response.request.method} {response.request.url}: {response.text}"
        return response.json() if response.content else {}

    def source(self, name: str) -> dict:
        return self._ok(self.http.post("/api/v1/sources", json={"name": name}))

    def destination(self, source_id: int, slug: str, settings: dict, *, enabled: bool = True) -> dict:
        body = {"slug": slug, "mode": "device", "enabled": enabled, "settings": settings}
        return self._ok(self.http.post(f"/api/v1/sources/{source_id}/destinations", json=body))

    def update(self, destination_id: int, settings: dict) -> dict:
        """Merge ``settings`` into the destination's (None removes a key)."""
        return self._ok(self.http.patch(f"/api/v1/destinations/{destination_id}", json={"settings": settings}))

    def set_enabled(self, destination_id: int, enabled: bool) -> dict:
        return self._ok(self.http.patch(f"/api/v1/destinations/{destination_id}", json={"enabled": enabled}))

    def bundle(self, write_key: str) -> str:
        response = httpx.get(f"{self.url}/analytics.js/v1/{write_key}/analytics.min.js", timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    def snippet(self, write_key: str) -> str:
        response = httpx.get(f"{self.url}/snippet/{write_key}.js", timeout=10)
        assert response.status_code == 200, response.text
        return response.text


def open_site(context: BrowserContext, workspace: Workspace, write_key: str, path: str = "/") -> Page:
    """A site page with the source's snippet pasted inline, as a site owner does; waits for the core."""
    snippet = workspace.snippet(write_key)
    html = f"<!doctype html><html><head><title>Loader test</title><script>{snippet}</script></head><body>site</body></html>"
    page = context.new_page()
    site = workspace.url + SITE_PATH
    page.route(re.compile("^" + re.escape(site) + "/"), lambda route: route.fulfill(
        status=200, content_type="text/html", body=html))
    page.goto(site + path, wait_until="domcontentloaded")  # "load" would wait for held vendor scripts
    page.wait_for_function("() => window.analytics && !Array.isArray(window.analytics)")
    return page


def run(page: Page, script: str) -> None:
    """Call the analytics API on the page (``script`` uses ``analytics``)."""
    page.evaluate(f"() => {{ {script} }}")


def stored_rows(db_url: str, source_id: int, predicate, timeout: float = 10.0, page: Page | None = None
                ) -> list[dict]:
    """The rows the collector stored for ``source_id`` (newest first, with their ``event``), once
    ``predicate(rows)`` holds or at the timeout. With ``page`` it waits through the page, so the
    sync API keeps running route handlers (say, ones that forward the collector's requests)."""
    from server.store import events
    from server.store.engine import make_engine

    engine = make_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            stored = events.list_events(engine, source_id, limit=500)
            if predicate(stored) or time.monotonic() > deadline:
                return stored
            if page is None:
                time.sleep(0.05)
            else:
                page.wait_for_timeout(50)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- one server per test module


class LoaderSite:
    """A live server with one source, for one test module: the workspace, the source, its
    destinations by slug, and the database (to read what the collector stored)."""

    def __init__(self, tmp_dir, live_server_class):
        self.db_url = f"sqlite:///{tmp_dir / 'live.db'}"
        self.server = live_server_class(self.db_url, SWITCHBOARD_ADMIN_TOKEN=ADMIN_TOKEN).start()
        self.workspace = Workspace(self.server.url)
        self.source = self.workspace.source("Loader test site")
        self.write_key = self.source["write_key"]
        self.destinations: dict[str, dict] = {}

    def add(self, slug: str, settings: dict, *, enabled: bool = True) -> dict:
        row = self.workspace.destination(self.source["id"], slug, settings, enabled=enabled)
        self.destinations[slug] = row
        return row

    def open(self, context: BrowserContext, path: str = "/") -> Page:
        return open_site(context, self.workspace, self.write_key, path)

    def stored_events(self, predicate, timeout: float = 10.0) -> list[dict]:
        """Events the collector stored for the source, once ``predicate(events)`` holds."""
        return stored_rows(self.db_url, self.source["id"], predicate, timeout)

    def close(self) -> None:
        self.workspace.http.close()
        self.server.stop()


# ---------------------------------------------------------------- checks every loader must pass


def check_calls_wait_for_the_vendor(site: LoaderSite, browser, slug: str, script: str, expect) -> list[Any]:
    """Calls made while the vendor script is still on its way are delivered once it arrives."""
    context = browser.new_context()
    try:
        routes = VendorRoutes()
        routes.mode[slug] = "hold"
        routes.install(context)
        page = site.open(context)
        run(page, script)
        page.wait_for_timeout(300)
        assert calls(page, slug) is None, "the vendor script has not arrived, nothing can be recorded yet"
        assert len(routes.held.get(slug, [])) == 1, routes.requests
        routes.release(slug)
        return wait_calls(page, slug, expect)
    finally:
        context.close()


def loader_in_bundle(site: LoaderSite, slug: str) -> bool:
    # The loader's unquoted `slug:"x"` (the config object's JSON keys are quoted: "slug":"x").
    return f'slug:"{slug}"' in site.workspace.bundle(site.write_key)


def check_disable_and_enable(site: LoaderSite, browser, slug: str) -> None:
    """Disabling the destination drops its loader from the next bundle; enabling brings it back."""
    row = site.destinations[slug]
    assert loader_in_bundle(site, slug)
    site.workspace.set_enabled(row["id"], False)
    try:
        assert not loader_in_bundle(site, slug)
        context = browser.new_context()
        try:
            routes = VendorRoutes().install(context)
            page = site.open(context)
            run(page, 'analytics.track("While Disabled")')
            page.evaluate("() => new Promise(r => analytics.ready(() => r(true)))")
            page.wait_for_timeout(200)
            assert slug not in routes.requests and calls(page, slug) is None
        finally:
            context.close()
    finally:
        site.workspace.set_enabled(row["id"], True)
    assert loader_in_bundle(site, slug)
    context = browser.new_context()
    try:
        routes = VendorRoutes().install(context)
        page = site.open(context)
        page.wait_for_function(f"() => !!({STUBS[slug].calls})")
        assert len(routes.requests[slug]) == 1
    finally:
        context.close()


def check_blocked_vendor(site: LoaderSite, browser, slug: str, neighbour: str, neighbour_saw) -> None:
    """A blocked vendor script: ready() fires, the neighbour destination and the collector still work."""
    context = browser.new_context()
    try:
        routes = VendorRoutes()
        routes.mode[slug] = "abort"
        routes.install(context)
        page = site.open(context)
        marker = f"Blocked {slug} check"
        page.evaluate("m => analytics.track(m, {n: 1})", marker)
        assert page.evaluate("() => new Promise(r => analytics.ready(() => r(true)))") is True
        wait_calls(page, neighbour, lambda c: neighbour_saw(c, marker))
        stored = site.stored_events(lambda ev: any(e["event"].get("event") == marker for e in ev))
        assert any(e["event"].get("event") == marker for e in stored), "the collector did not get the event"
        # Some vendors' official snippets (Intercom's) request the script only at the window's
        # load event, which may come after all of the above: wait for the request, not assume it.
        deadline = time.monotonic() + 10
        while not routes.requests.get(slug) and time.monotonic() < deadline:
            page.wait_for_timeout(25)
        assert len(routes.requests.get(slug, [])) == 1 and calls(page, slug) is None
    finally:
        context.close()


# ---------------------------------------------------------------- the same loaders under analytics-next

E2E_DIR = __import__("pathlib").Path(__file__).resolve().parent
ANALYTICS_NEXT = E2E_DIR / "node_modules" / ".switchboard" / "analytics-next.js"


def open_analytics_next(context: BrowserContext, site: LoaderSite, script: str) -> Page:
    """A site page running Segment's own @segment/analytics-next against our settings document (our
    loaders arrive as its remote plugins); ``script`` runs with ``analytics`` once it has loaded."""
    import subprocess

    if not ANALYTICS_NEXT.exists():  # `make node-deps` installed the packages; build the test file once
        subprocess.run(["node", str(E2E_DIR / "build-analytics-next.mjs")], check=True, cwd=E2E_DIR, timeout=120)
    base = site.server.url + SITE_PATH
    html = f"""<!doctype html><html><head><title>Next page</title><script src="{base}/analytics-next.js"></script>
<script>
AnalyticsBrowser.load({{ writeKey: {json.dumps(site.write_key)}, cdnURL: {json.dumps(site.server.url)} }})
  .then(function (r) {{ var analytics = r[0]; window.__next = analytics; {script} }})
  .catch(function (e) {{ window.__nextError = String(e); }});
</script></head><body>next</body></html>"""
    page = context.new_page()
    page.route(base + "/analytics-next.js", lambda route: route.fulfill(
        status=200, content_type="application/javascript", body=ANALYTICS_NEXT.read_text()))
    page.route(base + "/", lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    page.goto(base + "/", wait_until="domcontentloaded")
    page.wait_for_function("() => window.__next !== undefined || window.__nextError !== undefined")
    assert page.evaluate("() => window.__nextError || null") is None
    return page

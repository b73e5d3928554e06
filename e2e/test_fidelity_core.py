"""analytics-next fidelity of the browser core, in real Chromium against a real server: what a
site's code sees (promises of a Context, the middleware facade, plugins, the query-string API,
load options, override rules) and what must never leave the browser (Segment.io: false, events a
middleware or plugin failed on). The side-by-side diff against @segment/analytics-next itself is
e2e/test_differential.py; these tests pin our side of each rule."""

from __future__ import annotations

import time

import pytest
from bundle_site import PIXEL, SITE, make_source, serve_site, site_page, wait_for_events

from server.store import open_store

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)


@pytest.fixture(scope="session")
def base_url():
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('fidelity') / 'live.db'}"
    engine = open_store(url)
    live = LiveServer(url).start()
    yield live, engine
    live.stop()
    engine.dispose()


def with_options(server_url: str, write_key: str, options_js: str, script: str = "") -> str:
    """A site page whose snippet calls analytics.load(key, options) (as @segment/snippet users do)."""
    html = site_page(server_url, write_key, script)
    load = f'analytics.load("{write_key}");'
    assert load in html
    return html.replace(load, f'analytics.load("{write_key}", {options_js});')


def open_site(page, live, source, html: str, path: str = "/f.html", query: str = ""):
    serve_site(page, live.url, {path: html})
    page.goto(f"{SITE}{path}{query}")
    page.wait_for_function("() => window.analytics && window.analytics.initialized === true")


def tracks(stored: list[dict]) -> dict[str, dict]:
    return {e["event"]: e for e in stored if e["type"] == "track"}


def test_every_call_returns_a_promise_of_a_context_with_analytics_next_methods(page, server):
    live, engine = server
    source = make_source(engine, "Promises", [])
    open_site(page, live, source, site_page(live.url, source["write_key"]))
    seen = page.evaluate("""async () => {
        analytics.timeout(50);
        let cbArg = null;
        const t0 = Date.now();
        const ctx = await analytics.track("Promised", {n: 1}, {}, function (c) { cbArg = c; });
        const waited = Date.now() - t0;
        const ident = await analytics.identify("user-7", {plan: "pro"});
        const pg = await analytics.page("Docs");
        ctx.log("info", "hello", {x: 1});
        ctx.stats.increment("my_metric", 2);
        let missing = null;
        try { await analytics.track(); } catch (e) { missing = e.message; }
        return {
            event: ctx.event.event, type: ctx.event.type, props: ctx.event.properties, id: typeof ctx.id,
            same: ctx.isSame(ctx), other: ctx.isSame(ident), failed: ctx.failedDelivery() === undefined,
            logs: ctx.logs().map(l => l.message), metrics: ctx.stats.metrics.map(m => m.metric),
            json: Object.keys(ctx.toJSON()).sort(), cbSame: cbArg === ctx, waited,
            identType: ident.event.type, identUser: ident.event.userId, pageName: pg.event.name, missing,
            chained: analytics.on("x", function () {}) === analytics,
        };
    }""")
    assert seen["event"] == "Promised" and seen["type"] == "track" and seen["props"] == {"n": 1}
    assert seen["id"] == "string" and seen["same"] is True and seen["other"] is False and seen["failed"] is True
    assert "hello" in seen["logs"] and "my_metric" in seen["metrics"]
    assert seen["json"] == ["event", "id", "logs", "metrics"]
    assert seen["cbSame"] is True and seen["waited"] >= 40  # the callback waits analytics.timeout()
    assert seen["identType"] == "identify" and seen["identUser"] == "user-7" and seen["pageName"] == "Docs"
    assert seen["missing"] == "Event missing" and seen["chained"] is True
    # The promise resolved after the collector had the event.
    assert "Promised" in tracks(wait_for_events(engine, source["id"], 3, page=page, type="track"))


def test_middleware_facade_and_failures_fail_closed(page, server):
    live, engine = server
    source = make_source(engine, "Middleware", [])
    script = """
window.__errors = [];
analytics.on("error", function (e) { window.__errors.push({code: e.code, reason: String(e.reason), event: e.ctx && e.ctx.event.event}); });
// A PII scrubber written against analytics-next's facade.
analytics.addSourceMiddleware(function ({payload, next}) {
  if (payload.type() === "track" && payload.event() === "Boom") throw new Error("scrubber broke");
  if (payload.type() === "track" && payload.event() === "Silent") return;   // never calls next
  var props = payload.properties();
  if (props.email) { delete payload.obj.properties.email; payload.obj.properties.scrubbed = true; }
  payload.obj.context.seenBy = [payload.type(), String(payload.userId()), typeof payload.anonymousId()].join(":");
  next(payload);
});
"""
    open_site(page, live, source, site_page(live.url, source["write_key"], script))
    boom = page.evaluate("""async () => {
        await analytics.track("Signed Up", {email: "ada@example.com", plan: "pro"});
        const boom = await analytics.track("Boom", {email: "ada@example.com"});
        const silent = await analytics.track("Silent", {email: "ada@example.com"});
        await analytics.track("After", {});
        return {boom: !!boom.failedDelivery(), silent: !!silent.failedDelivery()};
    }""")
    assert boom == {"boom": True, "silent": True}
    stored = tracks(wait_for_events(engine, source["id"], 2, page=page, type="track"))
    page.wait_for_timeout(500)
    stored = tracks(wait_for_events(engine, source["id"], 2, page=page, type="track"))
    assert set(stored) == {"Signed Up", "After"}, "a throwing or silent middleware must drop the event"
    assert stored["Signed Up"]["properties"] == {"plan": "pro", "scrubbed": True}
    assert stored["Signed Up"]["context"]["seenBy"] == "track:null:string"
    errors = page.evaluate("window.__errors")
    assert [e["event"] for e in errors] == ["Boom"] and "scrubber broke" in errors[0]["reason"]


def test_segment_io_false_stays_in_the_browser_and_load_integrations_reach_every_event(page, server):
    live, engine = server
    source = make_source(engine, "Routing", [PIXEL])
    html = with_options(live.url, source["write_key"], '{integrations: {"Google Analytics 4": false, Mixpanel: false}}',
                        "analytics.ready(function () { window.__ready = true; });")
    open_site(page, live, source, html)
    page.wait_for_function("() => window.__ready === true")
    page.evaluate("""async () => {
        await analytics.track("Browser Only", {}, {integrations: {"Segment.io": false}});
        await analytics.track("Everywhere", {}, {integrations: {Mixpanel: true}});
    }""")
    page.wait_for_function("() => window.__fbq && window.__fbq.some(c => c.includes('Everywhere'))")
    stored = tracks(wait_for_events(engine, source["id"], 1, page=page, type="track"))
    page.wait_for_timeout(300)
    stored = tracks(wait_for_events(engine, source["id"], 1, page=page, type="track"))
    assert set(stored) == {"Everywhere"}, "Segment.io: false must keep the event away from the collector"
    # The device-mode destination still got it, as with analytics-next.
    assert page.evaluate("window.__fbq.some(c => c.includes('Browser Only'))") is True
    # Load-time integrations are on the event; the call's own option wins.
    assert stored["Everywhere"]["integrations"] == {"Google Analytics 4": False, "Mixpanel": True, "Meta Pixel": False}
    first_page = wait_for_events(engine, source["id"], 1, page=page, type="page")[0]
    assert first_page["integrations"]["Mixpanel"] is False and first_page["integrations"]["Google Analytics 4"] is False


def test_query_string_api_and_use_query_string_false(page, server):
    live, engine = server
    source = make_source(engine, "Query", [])
    open_site(page, live, source, site_page(live.url, source["write_key"]),
              query="?ajs_aid=anon-77&ajs_uid=user-9&ajs_trait_plan=pro&ajs_event=Email%20Clicked&ajs_prop_campaign=spring+sale")
    stored = wait_for_events(engine, source["id"], 3, page=page)
    assert [e["type"] for e in stored] == ["identify", "track", "page"]
    identify, track, _ = stored
    assert identify["userId"] == "user-9" and identify["traits"] == {"plan": "pro"}
    assert track["event"] == "Email Clicked" and track["properties"] == {"campaign": "spring sale"}
    assert all(e["anonymousId"] == "anon-77" for e in stored)

    other = make_source(engine, "Query off", [])
    page.evaluate("localStorage.clear()")
    page.goto("about:blank")
    page.context.clear_cookies()
    open_site(page, live, other, with_options(live.url, other["write_key"], "{useQueryString: false}"),
              path="/off.html", query="?ajs_uid=user-10&ajs_event=Nope")
    stored = wait_for_events(engine, other["id"], 1, page=page)
    page.wait_for_timeout(500)
    stored = wait_for_events(engine, other["id"], 1, page=page)
    assert [e["type"] for e in stored] == ["page"] and stored[0]["userId"] is None


def test_page_arguments_override_context_page_and_options_go_on_the_event(page, server):
    live, engine = server
    source = make_source(engine, "Overrides", [])
    open_site(page, live, source, site_page(live.url, source["write_key"]), query="?email=ada%40example.com")
    page.evaluate("""async () => {
        await analytics.page("Docs", "Intro", {url: "http://shop.localhost/f.html", search: "", section: 2},
            {context: {page: {title: "Clean title"}, ip: "0.0.0.0"}, userId: "opt-user", anonymousId: "opt-anon",
             timestamp: "2024-01-02T03:04:05.000Z", traits: {x: 1}});
    }""")
    docs = next(e for e in wait_for_events(engine, source["id"], 2, page=page, type="page") if e.get("name") == "Intro")
    page_ctx = docs["context"]["page"]
    assert page_ctx["url"] == "http://shop.localhost/f.html" and page_ctx["search"] == ""
    assert page_ctx["title"] == "Clean title" and page_ctx["path"] == "/f.html"  # partial context.page keeps the rest
    assert "referrer" in page_ctx
    assert docs["properties"]["url"] == "http://shop.localhost/f.html" and docs["properties"]["category"] == "Docs"
    assert docs["userId"] == "opt-user" and docs["anonymousId"] == "opt-anon"
    assert docs["timestamp"].startswith("2024-01-02T03:04:05")
    assert "userId" not in docs["context"] and docs["context"]["ip"] == "0.0.0.0" and docs["context"]["traits"] == {"x": 1}
    assert "campaign" not in docs["context"]
    # analytics-next keeps an anonymousId given as an option.
    assert page.evaluate("analytics.user().anonymousId()") == "opt-anon"


def test_plugins_use_context_methods_cancel_and_deregister(page, server):
    live, engine = server
    source = make_source(engine, "Plugins", [])
    open_site(page, live, source, site_page(live.url, source["write_key"]))
    result = page.evaluate("""async () => {
        const enrich = {name: "Enricher", type: "enrichment", version: "1", isLoaded: () => true, load: () => Promise.resolve(),
          track: (ctx) => { ctx.updateEvent("properties.enriched", true); ctx.log("info", "enriched"); ctx.stats.increment("x"); return ctx; }};
        const gate = {name: "Gate", type: "before", version: "1", isLoaded: () => true, load: () => Promise.resolve(),
          track: (ctx) => { if (ctx.event.event === "Blocked") ctx.cancel(); return ctx; }};
        const seen = [];
        const dest = {name: "Recorder", type: "destination", version: "1", isLoaded: () => true, load: () => Promise.resolve(),
          track: (ctx) => { seen.push(ctx.event.event); return ctx; }};
        const reg = await analytics.register(enrich, gate, dest);
        const a = await analytics.track("Kept");
        const b = await analytics.track("Blocked");
        const dereg = await analytics.deregister("Enricher");
        await analytics.track("Plain");
        return {reg: reg.event.event, regType: typeof reg.isSame, dereg: dereg.event.event,
                logs: a.logs().map(l => l.message), blocked: !!b.failedDelivery(), seen};
    }""")
    assert result["reg"] == "system" and result["regType"] == "function" and result["dereg"] == "system"
    assert "enriched" in result["logs"] and result["blocked"] is True
    assert result["seen"] == ["Kept", "Plain"]
    stored = tracks(wait_for_events(engine, source["id"], 2, page=page, type="track"))
    assert set(stored) == {"Kept", "Plain"}
    assert stored["Kept"]["properties"] == {"enriched": True} and stored["Plain"]["properties"] == {}


def test_destination_middleware_changes_what_a_device_mode_destination_gets(page, server):
    live, engine = server
    source = make_source(engine, "Dest middleware", [PIXEL])
    script = """
analytics.addDestinationMiddleware("Meta Pixel", function ({payload, next}) {
  if (payload.event() === "Hidden") return next(null);
  payload.obj.event = "Renamed " + payload.event();
  next(payload);
});
analytics.ready(function () { window.__ready = true; });
"""
    open_site(page, live, source, site_page(live.url, source["write_key"], script))
    page.wait_for_function("() => window.__ready === true")
    page.evaluate("analytics.track('Hidden'); analytics.track('Bought')")
    page.wait_for_function("() => window.__fbq && window.__fbq.some(c => c.includes('Renamed Bought'))")
    assert page.evaluate("window.__fbq.some(c => c.includes('Hidden') || c.includes('Renamed Hidden'))") is False
    stored = tracks(wait_for_events(engine, source["id"], 2, page=page, type="track"))
    assert set(stored) == {"Hidden", "Bought"}  # the collector gets the events as the site sent them


def test_cookie_user_and_persistence_options(page, server):
    live, engine = server
    source = make_source(engine, "Cookies", [])
    options = '{cookie: {sameSite: "Strict", maxage: 7, path: "/"}, user: {cookie: {key: "my_uid"}, localStorage: {key: "my_traits"}}}'
    open_site(page, live, source, with_options(live.url, source["write_key"], options))
    page.evaluate("analytics.identify('user-5', {plan: 'pro'})")
    jar = {c["name"]: c for c in page.context.cookies()}
    assert "my_uid" in jar and "ajs_user_id" not in jar and jar["my_uid"]["value"] == "user-5"
    assert jar["my_uid"]["sameSite"] == "Strict" and jar["ajs_anonymous_id"]["secure"] is False
    assert 6 * 86400 < jar["my_uid"]["expires"] - time.time() < 8 * 86400
    assert page.evaluate("JSON.parse(localStorage.getItem('my_traits'))") == {"plan": "pro"}

    other = make_source(engine, "No persistence", [])
    page.evaluate("localStorage.clear()")
    page.goto("about:blank")
    page.context.clear_cookies()
    open_site(page, live, other, with_options(live.url, other["write_key"], "{disableClientPersistence: true}"),
              path="/mem.html")
    page.evaluate("analytics.identify('user-6', {plan: 'free'})")
    assert wait_for_events(engine, other["id"], 2, page=page)[-1]["userId"] == "user-6"
    assert not [c for c in page.context.cookies() if c["name"].startswith("ajs_")]
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('ajs_') || k.startsWith('sb_outbox'))") == []
    assert page.evaluate("analytics.user().id()") == "user-6"


def test_user_agent_data_client_hints_and_initial_pageview(page, server):
    live, engine = server
    source = make_source(engine, "Hints", [])
    html = with_options(live.url, source["write_key"], '{highEntropyValuesClientHints: ["platformVersion"], initialPageview: true}')
    open_site(page, live, source, html)
    pages = wait_for_events(engine, source["id"], 2, page=page, type="page")
    assert len(pages) == 2  # initialPageview adds one to the snippet's own page()
    uad = pages[0]["context"]["userAgentData"]
    assert isinstance(uad["brands"], list) and "mobile" in uad and "platform" in uad and "platformVersion" in uad

    other = make_source(engine, "Low hints", [])
    open_site(page, live, other, site_page(live.url, other["write_key"]), path="/low.html")
    uad = wait_for_events(engine, other["id"], 1, page=page)[0]["context"]["userAgentData"]
    assert set(uad) == {"brands", "mobile", "platform"}


def test_on_and_ready_callbacks_get_analytics_next_arguments(page, server):
    live, engine = server
    source = make_source(engine, "Callbacks", [])
    script = """
window.__seen = {};
analytics.on("initialize", function (settings, options) { window.__seen.initialize = [typeof settings, options.custom]; });
analytics.on("track", function (name, props) { window.__seen.track = [name, props]; });
analytics.on("page", function (category, name, props) { window.__seen.page = [category, name, typeof props]; });
analytics.on("identify", function (id, traits) { window.__seen.identify = [id, traits]; });
analytics.ready(function (res) { window.__seen.ready = Array.isArray(res); });
"""
    open_site(page, live, source, with_options(live.url, source["write_key"], "{custom: 1}", script))
    page.evaluate("async () => { await analytics.track('T', {a: 1}); await analytics.identify('u', {b: 2}); }")
    page.wait_for_function("() => window.__seen.page && window.__seen.ready !== undefined")
    seen = page.evaluate("window.__seen")
    assert seen == {"initialize": ["object", 1], "track": ["T", {"a": 1}], "page": [None, None, "object"],
                    "identify": ["u", {"b": 2}], "ready": True}


def test_coming_back_online_sends_at_once(page, server):
    live, engine = server
    source = make_source(engine, "Online", [])
    open_site(page, live, source, site_page(live.url, source["write_key"]))
    wait_for_events(engine, source["id"], 1, page=page)
    page.context.set_offline(True)
    page.evaluate("analytics.track('While Offline')")
    page.wait_for_timeout(4000)  # a few failed tries: the next backoff step is seconds away
    page.context.set_offline(False)
    stored = wait_for_events(engine, source["id"], 2, timeout=2.5, page=page, type="track")
    assert [e["event"] for e in stored] == ["While Offline"], "the queue must flush when the browser is back online"


def test_retry_queue_false_drops_a_failed_request_with_an_error(page, server):
    live, engine = server
    source = make_source(engine, "No retries", [])
    tries = []

    def fail(route):
        tries.append(route.request.url)
        route.fulfill(status=503, body="{}", headers={"Access-Control-Allow-Origin": "*"})

    page.route(f"{live.url}/v1/t", fail)
    script = "analytics.on('error', function (e) { window.__err = {code: e.code, status: e.status}; });"
    open_site(page, live, source, with_options(live.url, source["write_key"], "{retryQueue: false}", script))
    failed = page.evaluate("async () => !!(await analytics.track('Lost')).failedDelivery()")
    assert failed is True
    assert page.evaluate("window.__err") == {"code": "delivery_failure", "status": 503}
    page.wait_for_timeout(1500)  # the default would retry after 0.5-1 s
    assert len(tries) == 1


def test_load_time_all_false_keeps_events_in_the_browser_unless_segment_io_is_on(page, server):
    live, engine = server
    off = make_source(engine, "All off", [])
    open_site(page, live, off, with_options(live.url, off["write_key"], "{integrations: {All: false}}"), path="/off.html")
    assert page.evaluate("async () => (await analytics.track('Kept Here')).event.integrations") == {"All": False}
    on = make_source(engine, "All off but Segment", [])
    open_site(page, live, on, with_options(live.url, on["write_key"], '{integrations: {All: false, "Segment.io": true}}'),
              path="/on.html")
    page.evaluate("async () => { await analytics.track('Sent'); }")
    assert [e["event"] for e in wait_for_events(engine, on["id"], 1, page=page, type="track")] == ["Sent"]
    assert wait_for_events(engine, off["id"], 1, timeout=1.0, page=page) == []


def test_events_after_a_middleware_call_are_dropped_when_the_extras_chunk_cannot_load(page, server):
    live, engine = server
    source = make_source(engine, "Chunk blocked", [])
    page.route(f"{live.url}/analytics.js/v1/plugins/core_extras.*", lambda route: route.abort())
    script = """
window.__errors = [];
analytics.on("error", function (e) { window.__errors.push(e.code); });
analytics.addSourceMiddleware(function ({payload, next}) { delete payload.obj.properties.email; next(payload); });
analytics.track("Signed Up", {email: "ada@example.com"});
"""
    open_site(page, live, source, site_page(live.url, source["write_key"], script))
    page.wait_for_function("() => window.__errors.length >= 2")  # the snippet's page() and the track
    assert set(page.evaluate("window.__errors")) == {"plugin_error"}
    assert wait_for_events(engine, source["id"], 1, timeout=1.0, page=page) == []

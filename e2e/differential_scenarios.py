"""The page scenarios of the differential test (issue #15), one page script each, run unchanged
against analytics-next and against our bundle (see differential_site.py for the page helpers:
K, out(), done(), json()). Every script guards what might throw (``attempt``) so that a missing
API shows up as a recorded difference, not as a dead page."""

from __future__ import annotations

import time

from differential_site import Scenario

# attempt(name, fn): run fn; record "threw" under name if it throws (messages differ by engine).
ATTEMPT = "function attempt(n, f) { try { return f(); } catch (x) { out(n, 'threw'); } }\n"
# After load: the real instance (window.analytics), not the snippet's stub.
READY = "analytics.ready(function () { var a = window.analytics;\n"
END_READY = "\n});"


def s(name: str, js: str, **kw) -> Scenario:
    return Scenario(name, ATTEMPT + js, **kw)


def promise_of(expr: str, key: str) -> str:
    """Record what a call returns: a thenable? and what it resolves to (its ctx.event fields)."""
    return f"""attempt("{key}_call", function () {{
  var r = {expr};
  out("{key}_thenable", !!(r && typeof r.then == "function"));
  if (r && typeof r.then == "function") r.then(function (ctx) {{
    out("{key}_resolved", {{ hasEvent: !!(ctx && ctx.event), type: ctx && ctx.event && ctx.event.type,
      event: ctx && ctx.event && ctx.event.event, userId: ctx && ctx.event && ctx.event.userId,
      isInstance: ctx === window.analytics, methods: ["updateEvent", "cancel", "log", "stats", "failedDelivery"]
        .filter(function (m) {{ return ctx && typeof ctx[m] == "function"; }}) }});
  }});
}});"""


SCENARIOS: list[Scenario] = [
    # ---- basics: calls, identity, storage formats
    s("basic_page_track", 'analytics.load(K); analytics.page(); analytics.track("Order Completed", {total: 3, currency: "EUR"}); done();', expect=("Order Completed",)),
    s("identify_traits", 'analytics.load(K); analytics.identify("u-1", {email: "a@b.example", plan: "pro"}); analytics.track("After"); done();'),
    s("identify_anonymous_traits", 'analytics.load(K); analytics.identify({plan: "free"}); analytics.track("After"); done();'),
    s("identify_switch_user", 'analytics.load(K); ' + READY + 'a.identify("u-1", {a: 1}); a.identify("u-2", {b: 2}); a.track("After"); done();' + END_READY),
    s("identify_number_id", 'analytics.load(K); ' + READY + 'a.identify(42, {n: 1}); a.track("After"); done();' + END_READY),
    s("group_traits", 'analytics.load(K); ' + READY + 'a.group("g-1", {name: "Acme"}); a.group("g-1", {size: 3}); a.track("After"); out("gid", a.group().id()); out("gtraits", a.group().traits()); done();' + END_READY),
    s("alias_default_from", 'analytics.load(K); ' + READY + 'a.identify("u-1"); a.alias("u-new"); done();' + END_READY),
    s("alias_explicit_from", 'analytics.load(K); ' + READY + 'a.alias("to-id", "from-id"); done();' + END_READY),
    s("reset_clears_identity", 'analytics.load(K); ' + READY + 'a.identify("u-1", {x: 1}); a.group("g-1"); a.reset(); a.track("After reset"); out("uid", a.user().id()); done();' + END_READY),
    s("set_anonymous_id", 'analytics.load(K); ' + READY + 'a.setAnonymousId("anon-fixed"); a.track("After"); out("aid", a.user().anonymousId()); done();' + END_READY),
    s("user_accessors", 'analytics.load(K); ' + READY + 'a.identify("u-9", {t: 1}); out("id", a.user().id()); out("traits", a.user().traits()); done();' + END_READY),
    s("page_argument_forms", 'analytics.load(K); ' + READY + 'a.page("Docs", "Intro", {section: 1}); a.page("Pricing"); a.page({custom: true}); a.page(null, "Only name"); done();' + END_READY),
    s("screen_call", 'analytics.load(K); ' + READY + 'a.screen("Home", {x: 1}); done();' + END_READY),
    s("queued_before_load", 'analytics.track("Queued 1"); analytics.identify("q-user"); analytics.track("Queued 2"); analytics.load(K); done();'),
    s("utm_campaign", 'analytics.load(K); analytics.page(); done();', query="?utm_source=news&utm_campaign=spring%20sale&utm_medium=email"),
    s("canonical_url", 'var l = document.createElement("link"); l.rel = "canonical"; l.href = "http://shop.localhost/canonical"; document.head.appendChild(l); analytics.load(K); analytics.page(); done();', query="?x=1"),
    # ---- load-time options
    s("load_integrations_all_false", 'analytics.load(K, {integrations: {All: false, Warehouse: true}}); analytics.track("Consented"); done();', end=False),
    s("load_integrations_device_off", 'analytics.load(K, {integrations: {"Google Analytics 4": false}}); analytics.page(); analytics.track("Order Completed", {total: 5}); done();', device=True),
    s("load_integrations_merge_call", 'analytics.load(K, {integrations: {Mixpanel: false}}); analytics.track("Merged", {}, {integrations: {Amplitude: false}}); done();'),
    s("load_segmentio_false", 'analytics.load(K, {integrations: {"Segment.io": false}}); analytics.track("Never stored"); done();', end=False),
    s("call_segmentio_false", 'analytics.load(K); ' + READY + 'a.track("Kept back", {}, {integrations: {"Segment.io": false}}); a.track("Sent"); done();' + END_READY),
    s("call_all_false_device", 'analytics.load(K); ' + READY + 'a.track("Order Completed", {total: 1}, {integrations: {All: false}}); a.track("Signed Up", {}); done();' + END_READY, device=True),
    s("initial_pageview", 'analytics.load(K, {initialPageview: true}); analytics.track("After"); done();'),
    s("cookie_secure_default", 'analytics.load(K); analytics.identify("cookie-user"); done();'),
    s("cookie_secure_option", 'analytics.load(K, {cookie: {secure: true}}); analytics.identify("cookie-user"); done();'),
    s("user_persist_false", 'analytics.load(K, {user: {persist: false}}); analytics.identify("mem-user", {t: 1}); done();'),
    s("disable_client_persistence", 'analytics.load(K, {disableClientPersistence: true}); analytics.identify("mem-user", {t: 1}); done();'),
    s("high_entropy_client_hints", 'analytics.load(K, {highEntropyValuesClientHints: ["architecture", "bitness"]}); analytics.track("Hints"); done();'),
    # ---- source middleware: facade, changes, drops, fail-closed
    s("middleware_facade", 'analytics.addSourceMiddleware(function (m) { var p = m.payload; out("facade_" + p.obj.type, attempt("facade_err_" + p.obj.type, function () { return [p.type(), p.event && p.event(), p.userId(), p.anonymousId() ? "set" : "none", p.properties ? p.properties() : null]; })); m.next(p); }); analytics.load(K); analytics.identify("mw-user"); analytics.track("Clicked", {a: 1}); done();'),
    s("middleware_modifies", 'analytics.addSourceMiddleware(function (m) { m.payload.obj.properties = m.payload.obj.properties || {}; m.payload.obj.properties.added = true; m.payload.obj.context.extra = "mw"; m.next(m.payload); }); analytics.load(K); analytics.track("Changed"); done();'),
    s("middleware_drops", 'analytics.addSourceMiddleware(function (m) { if (m.payload.obj.event == "Drop me") return m.next(null); m.next(m.payload); }); analytics.load(K); analytics.track("Drop me"); analytics.track("Keep me"); done();'),
    s("middleware_skips_next", 'analytics.addSourceMiddleware(function (m) { if (m.payload.obj.event != "Swallowed") m.next(m.payload); }); analytics.load(K); analytics.track("Swallowed"); analytics.track("Passed"); done();'),
    s("middleware_throws_fails_closed", 'analytics.addSourceMiddleware(function (m) { if (m.payload.obj.event == "Secret") throw new Error("scrubber broke"); m.next(m.payload); }); analytics.load(K); analytics.track("Secret", {email: "x@y.example"}); analytics.track("Public"); done();'),
    s("middleware_scrubber_facade", 'analytics.addSourceMiddleware(function (m) { if (m.payload.type() == "track") delete m.payload.obj.properties.email; m.next(m.payload); }); analytics.load(K); analytics.track("Signed Up", {email: "pii@x.example", plan: "pro"}); done();'),
    s("destination_middleware_device", 'analytics.addDestinationMiddleware("Google Analytics 4", function (m) { if (m.payload.obj.event == "Hidden") return m.next(null); m.payload.obj.properties.dm = "yes"; m.next(m.payload); }); analytics.load(K); analytics.track("Hidden", {a: 1}); analytics.track("Shown", {a: 2}); done(300);', device=True),
    # ---- promises and Context
    s("promise_track", 'analytics.load(K); ' + READY + promise_of('a.track("Promised", {p: 1})', "track") + ' done(100);' + END_READY, expect=("Promised",)),
    s("promise_identify", 'analytics.load(K); ' + READY + promise_of('a.identify("p-user")', "identify") + ' done(100);' + END_READY),
    s("promise_page", 'analytics.load(K); ' + READY + promise_of('a.page("Promised page")', "page") + ' done(100);' + END_READY),
    s("promise_group_alias", 'analytics.load(K); ' + READY + promise_of('a.group("g-p")', "group") + promise_of('a.alias("al-p")', "alias") + ' done(100);' + END_READY),
    s("ready_resolves", 'analytics.load(K); ' + READY + 'var r = a.ready(); out("ready_thenable", !!(r && r.then)); r.then(function (v) { out("ready_value_is_instance", v === window.analytics); out("ready_value_type", Array.isArray(v) ? "array" : typeof v); }); done(100);' + END_READY),
    # ---- query-string API
    s("query_string_track_identify", 'analytics.load(K); done(300);', query="?ajs_uid=qs-user&ajs_event=Clicked%20Email&ajs_prop_campaign=spring&ajs_trait_email=q%40s.example", expect=("Clicked Email",)),
    s("query_string_anonymous_id", 'analytics.load(K); analytics.track("After"); done(300);', query="?ajs_aid=anon-from-link"),
    s("query_string_off", 'analytics.load(K, {useQueryString: false}); analytics.track("After"); done(300);', query="?ajs_uid=qs-user&ajs_event=Ignored"),
    # ---- override semantics
    s("page_overrides_context_page", 'analytics.load(K); analytics.page("Clean", {url: "http://shop.localhost/clean", path: "/clean", search: "", title: "Clean title", referrer: "http://ref.localhost/"}); done();', query="?email=pii%40x.example"),
    s("context_deep_merge", 'analytics.load(K); analytics.track("Partial page", {}, {context: {page: {title: "Overridden"}, app: {name: "shop"}}}); done();'),
    s("options_user_id", 'analytics.load(K); analytics.track("With user", {}, {userId: "opt-user"}); done();'),
    s("options_anonymous_id", 'analytics.load(K); analytics.track("With anon", {}, {anonymousId: "opt-anon"}); done();'),
    s("options_timestamp", 'analytics.load(K); analytics.track("Back-dated", {}, {timestamp: new Date("2020-01-02T03:04:05.000Z")}); done();'),
    s("options_unknown_keys", 'analytics.load(K); analytics.track("Extra", {}, {ip: "0.0.0.0", campaign: {name: "opt"}}); done();'),
    # ---- plugins
    s("plugin_update_event", 'analytics.load(K); ' + READY + 'attempt("register", function () { var r = a.register({name: "Enricher", type: "enrichment", version: "1.0.0", isLoaded: function () { return true; }, load: function () { return Promise.resolve(); }, track: function (ctx) { ctx.updateEvent("properties.enriched", true); ctx.updateEvent("context.plugin", "yes"); return ctx; }}); out("register_thenable", !!(r && r.then)); return r && r.then(function (v) { out("register_value", v === window.analytics ? "instance" : v && v.event ? "context" : typeof v); a.track("Enriched"); done(100); }); });' + END_READY, expect=("Enriched",)),
    s("plugin_cancel", 'analytics.load(K); ' + READY + 'a.register({name: "Canceller", type: "before", version: "1.0.0", isLoaded: function () { return true; }, load: function () { return Promise.resolve(); }, track: function (ctx) { if (ctx.event.event == "Cancelled") ctx.cancel(); return ctx; }}).then(function () { a.track("Cancelled"); a.track("Kept"); done(100); });' + END_READY),
    s("plugin_deregister", 'analytics.load(K); ' + READY + 'a.register({name: "Marker", type: "enrichment", version: "1.0.0", isLoaded: function () { return true; }, load: function () { return Promise.resolve(); }, track: function (ctx) { ctx.event.properties.marked = true; return ctx; }}).then(function () { a.track("Marked"); out("dereg_fn", typeof a.deregister); return attempt("dereg", function () { return a.deregister("Marker"); }); }).then(function () { a.track("Unmarked"); done(100); });' + END_READY, expect=("Marked", "Unmarked")),
    s("plugin_context_log_stats", 'analytics.load(K); ' + READY + 'a.register({name: "Logger", type: "enrichment", version: "1.0.0", isLoaded: function () { return true; }, load: function () { return Promise.resolve(); }, track: function (ctx) { ctx.log("info", "seen"); ctx.stats.increment("seen"); ctx.event.properties.logged = true; return ctx; }}).then(function () { a.track("Logged"); done(100); });' + END_READY),
    s("plugin_throws_before", 'analytics.load(K); ' + READY + 'a.register({name: "Broken", type: "before", version: "1.0.0", isLoaded: function () { return true; }, load: function () { return Promise.resolve(); }, track: function (ctx) { if (ctx.event.event == "Broken") throw new Error("plugin broke"); return ctx; }}).then(function () { a.track("Broken"); a.track("Fine"); done(100); });' + END_READY),
    # ---- smaller API gaps
    s("timeout_api", 'analytics.load(K); ' + READY + 'out("timeout_fn", typeof a.timeout); attempt("timeout", function () { a.timeout(500); }); a.track("After timeout"); done();' + END_READY),
    s("callback_arguments", 'analytics.load(K); ' + READY + 'a.track("Cb", {c: 1}, {}, function (ctx) { out("track_cb", {n: arguments.length, isContext: !!(ctx && ctx.event), event: ctx && ctx.event && ctx.event.event}); }); a.page("Cb page", {}, function (ctx) { out("page_cb", {n: arguments.length, isContext: !!(ctx && ctx.event)}); }); done(200);' + END_READY),
    s("on_event_arguments", 'analytics.on("track", function (n) { if (n != "__end__") out("on_track", [].slice.call(arguments)); }); analytics.on("page", function () { out("on_page", [].slice.call(arguments)); }); analytics.on("identify", function () { out("on_identify", [].slice.call(arguments)); }); analytics.load(K); analytics.track("Listened", {l: 1}, {context: {x: 1}}); analytics.page("Cat", "Listened page"); analytics.identify("on-user", {t: 1}); done();'),
    s("ready_callback_arguments", 'analytics.ready(function () { out("ready_args", arguments.length); out("ready_this_is_instance", this === window.analytics); }); analytics.load(K); done(100);'),
    s("track_link", 'analytics.load(K); ' + READY + 'var l = document.createElement("a"); l.href = "#clicked"; l.id = "tl"; document.body.appendChild(l); Promise.resolve(a.trackLink(l, "Link Clicked", {where: "body"})).then(function () { setTimeout(function () { l.click(); done(500); }, 300); });' + END_READY, expect=("Link Clicked",)),
    s("middleware_added_after_load", 'analytics.load(K); ' + READY + 'a.addSourceMiddleware(function (m) { m.payload.obj.properties = m.payload.obj.properties || {}; m.payload.obj.properties.late = true; m.next(m.payload); }); setTimeout(function () { a.track("After late middleware"); done(); }, 50);' + END_READY, expect=("After late middleware",)),
    s("identify_options_context", 'analytics.load(K); analytics.identify("ctx-user", {plan: "a"}, {context: {traits: {extra: 1}}, integrations: {Mixpanel: false}}); done();'),
    s("library_name_default", 'analytics.load(K); analytics.track("Library"); done();', library_name=None),
]


def _online(page, run, stored) -> None:
    """Offline for 3.5 s (our backoff would be at its 2-4 s step by then), online again, and
    whether the event taken while offline reaches the collector within 1 s of that."""
    page.wait_for_function("() => window.__loadedForDrive === true")
    page.context.set_offline(True)
    page.evaluate("() => { window.analytics.track('Taken offline'); }")
    page.wait_for_timeout(3500)
    page.context.set_offline(False)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4 and not any(e.get("event") == "Taken offline" for e in stored()):
        page.wait_for_timeout(50)
    run.out["sent_within_1s_of_online"] = time.monotonic() - t0 < 1.0
    page.evaluate("() => done()")


SCENARIOS.append(s("online_flush", 'analytics.load(K); analytics.ready(function () { window.__loadedForDrive = true; });',
                   drive=_online, expect=("Taken offline",)))

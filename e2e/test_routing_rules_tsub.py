"""Device-mode filters under Segment's own analytics-next (docs/filters.md "analytics-next"): the
routing rules our settings document carries (server/cdn/routing_rules.py), run by analytics-next's
own tsub middleware in Chromium, give the answers of server/fql.py and server/rules.py on the shared
FQL table and on events of odd shapes; and a page that loads analytics-next's standalone CDN build
(which fetches its tsub-middleware chunk from the CDN) sends a device-mode destination only what
its filters allow."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from bundle_site import PIXEL, make_source, serve_site, served
from differential_site import GA4, SITE, DiffSite, page_html
from fql_cases import CASES, EVENT
from test_analytics_next import analytics_next_js  # noqa: F401  (the module fixture that builds it)

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)
from server.cdn.routing_rules import Untranslatable, condition_ir, routing_rules
from server.fql import evaluate, parse
from server.rules import apply_filters, check_filters
from server.store import events, open_store, workspace

E2E = Path(__file__).resolve().parent
BUILT = E2E / "node_modules" / ".switchboard" / "tsub-routing.js"
# analytics-next's routing middleware, its destination-middleware runner and tsub, from npm as is.
ENTRY = """
import { tsubMiddleware } from '@segment/analytics-next/src/plugins/routing-middleware';
import { applyDestinationMiddleware } from '@segment/analytics-next/src/plugins/middleware';
import * as tsub from '@segment/analytics-next/src/vendor/tsub/tsub';
window.__tsub = { tsubMiddleware, applyDestinationMiddleware, matches: tsub.matches };
"""

# Events of shapes where tsub's path walk differs from ours (lists, texts, null on the way).
ODD = [
    {**EVENT, "properties": ["a", "b", "c"]},
    {**EVENT, "properties": "abc", "context": None},
    {"type": "track", "event": "é😀 [x]", "properties": {"length": 2, "0": "zero", "nested": [{"deep": {"x": "yes"}}]}},
    {"type": "identify", "userId": None, "traits": {"email": ["a@b.c"], "plan": {"name": "pro"}}},
    {"type": "page", "properties": {"nested": {"deep": "text"}, "count": "3", "enabled": 1, "empty": 0}},
]
EXTRA = [
    "properties.length = 3", "properties.`0` = \"zero\"", "exists(properties.length)", "properties.nested.deep.x = null",
    "properties.nested.deep != null", "match(event, \"*[x]\")", "match(event, \"é*\")", "match(properties, \"*\")",
    "properties.count", "properties.count <= 3", "traits.plan = null", "userId != null", "exists(context.ip)",
    "contains(\"a@b.c, x@y.z\", traits.email)", "properties.enabled = true", "properties.empty = 0",
]
FILTER_LISTS = [
    [{"if": 'event = "Button Clicked"', "action": "drop"}],
    [{"if": 'type = "identify"', "action": "only"}],
    [{"if": "true", "action": "drop_properties", "fields": ["properties.price", "context.ip", "traits.none"]}],
    [{"if": "exists(traits.email)", "action": "allow_properties", "fields": ["properties.count", "traits.plan", "properties.absent"]}],
    [{"if": "properties.count > 2", "action": "drop_properties", "fields": ["properties.count"]},
     {"if": "exists(properties.count)", "action": "drop"}],
    [{"if": "exists(traits.email)", "action": "drop_properties",
      "fields": ["traits.email", "properties.nested.deep", "context.library.name"]},
     {"if": "exists(traits.email) or exists(properties.nested.deep)", "action": "drop"}],
    [{"if": 'type = "track"', "action": "sample", "percent": 0}, {"if": "true", "action": "sample", "percent": 100}],
]


@pytest.fixture(scope="module")
def tsub_page(browser):
    if not BUILT.exists():
        BUILT.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(E2E / "node_modules" / ".bin" / "esbuild"), "--bundle", "--format=iife", "--platform=browser",
                        "--target=es2018", f"--outfile={BUILT}", "--log-level=warning"],
                       input=ENTRY, text=True, check=True, cwd=E2E, timeout=120)
    context = browser.new_context()
    page = context.new_page()
    page.set_content("<!doctype html><title>tsub</title>")
    page.add_script_tag(content=BUILT.read_text())
    yield page
    context.close()


def test_translated_conditions_match_in_tsub_as_in_our_evaluator(tsub_page):
    checked, refused = [], []
    for condition in [c for c, _ in CASES] + EXTRA:
        try:
            ir = json.dumps(condition_ir(parse(condition)))
        except Untranslatable:
            refused.append(condition)
            continue
        for event in [EVENT, *ODD]:
            checked.append((condition, event, ir, evaluate(condition, event)))
    got = tsub_page.evaluate("(cases) => cases.map(([c, e, ir]) => window.__tsub.matches(e, {type: 'fql', ir}))", checked)
    wrong = [(c, e, want) for (c, e, _, want), answer in zip(checked, got) if answer is not want]
    assert wrong == []
    assert len(checked) >= 6 * 50 and len(refused) == 5  # the contains() and "?" cases of the table


def test_routing_rules_run_by_analytics_next_middleware_do_what_our_filters_do(tsub_page):
    events_in = [{**EVENT, "messageId": f"m-{i}"} for i in range(3)] + ODD
    runs = []
    for filters in FILTER_LISTS:
        clean = check_filters(filters)
        rules = routing_rules("Dest", clean)
        runs.append((rules, [apply_filters(e, clean)[0] for e in events_in]))
    got = tsub_page.evaluate("""async ([runs, es]) => {
      const t = window.__tsub, out = [];
      for (const [rules] of runs) {
        const mw = t.tsubMiddleware(rules);
        out.push(await Promise.all(es.map(e => t.applyDestinationMiddleware("Dest", e, [mw]))));
      }
      return out;
    }""", [runs, events_in])
    for (filters, (_, expected), answer) in zip(FILTER_LISTS, runs, got):
        assert answer == expected, filters


def test_analytics_next_from_the_cdn_sends_a_device_mode_destination_only_what_its_filters_allow(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'tsub.db'}"
    engine = open_store(url)
    live = LiveServer(url).start()
    try:
        source = workspace.create_source(engine, "Next with filters")
        ga4 = workspace.add_destination(engine, source["id"], mode="device", enabled=True, **GA4)
        workspace.set_filters(engine, ga4["id"], check_filters([
            {"if": 'match(event, "Internal *") or properties.test = true', "action": "drop"},
            {"if": 'type = "track"', "action": "only"},
            {"if": "true", "action": "drop_properties", "fields": ["properties.email"]},
        ]))
        served(engine, source)  # written from this process: wait until the server has seen it
        doc = json.loads(urllib.request.urlopen(f"{live.url}/v1/projects/{source['write_key']}/settings").read())  # noqa: S310
        assert len(doc["middlewareSettings"]["routingRules"]) == 3  # tsub runs them, not our plugin:
        assert "filters" not in doc["remotePlugins"][0]["settings"]["__switchboard"]
        site = DiffSite(browser, engine, live.url)
        context = browser.new_context()
        context.grant_permissions(["local-network-access"])  # shop.localhost reaching our server on 127.0.0.1
        chunks: list[str] = []
        context.on("request", lambda r: chunks.append(r.url) if "/analytics-next/bundles/" in r.url else None)
        site.routes(context, "next", page_html(source["write_key"], """
          analytics.load(K);
          analytics.page();
          analytics.track("Internal ping", {n: 1});
          analytics.track("Alpha Clicked", {total: 5, email: "a@b.c"});
          analytics.track("Beta Clicked", {test: true});
          analytics.identify("u1", {plan: "pro"});
          analytics.track("Gamma Clicked", {plan: "pro"});
          done();
        """))
        page = context.new_page()
        page.goto(f"{SITE}/diff.html")
        page.wait_for_function("() => (window.__gtag || []).some(c => c[1] === 'Gamma_Clicked')", timeout=15000)
        page.wait_for_timeout(300)  # nothing else arrives later
        sent = [c[1:3] for c in page.evaluate("window.__gtag") if c[0] == "event" and c[1] != "__end__"]
        assert [name for name, _ in sent] == ["Alpha_Clicked", "Gamma_Clicked"], sent
        alpha = dict(sent)["Alpha_Clicked"]
        assert alpha["total"] == 5 and "email" not in alpha
        assert any("tsub-middleware" in u for u in chunks), chunks  # the chunk came from the CDN path
        # The collector still gets every event: filters apply to that destination only.
        deadline_rows = []
        for _ in range(100):
            deadline_rows = events.list_events(engine, source["id"], limit=50)
            if {"Internal ping", "Beta Clicked", "__end__"} <= {r["event"].get("event") for r in deadline_rows}:
                break
            page.wait_for_timeout(100)
        assert {"Internal ping", "Beta Clicked", "Alpha Clicked"} <= {r["event"].get("event") for r in deadline_rows}
        context.close()
    finally:
        live.stop()
        engine.dispose()


def test_filters_with_no_tsub_form_are_applied_by_our_plugin_file_under_analytics_next(page, tmp_path, analytics_next_js):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'plugin.db'}"
    engine = open_store(url)
    live = LiveServer(url).start()
    try:
        source = make_source(engine, "Next plugin filters", [PIXEL])
        pixel = workspace.list_destinations(engine, source["id"])[0]
        workspace.set_filters(engine, pixel["id"], check_filters([
            {"if": 'contains(properties.tags, "vip")', "action": "drop"},   # a list: no exact tsub form
            {"if": "true", "action": "sample", "percent": 50},              # tsub samples by its own hash
            {"if": 'type = "track"', "action": "only"},
        ]))
        served(engine, source)  # written from this process: wait until the server has seen it
        doc = json.loads(urllib.request.urlopen(f"{live.url}/v1/projects/{source['write_key']}/settings").read())  # noqa: S310
        assert doc["middlewareSettings"] == {} and len(doc["remotePlugins"][0]["settings"]["__switchboard"]["filters"]) == 3
        html = f"""<!doctype html><html><head><title>Next page</title>
<script src="{SITE}/analytics-next.js"></script>
<script>
AnalyticsBrowser.load({{ writeKey: {source['write_key']!r}, cdnURL: {live.url!r} }})
  .then(async function (r) {{
    var analytics = r[0], ids = [];
    analytics.register({{name: "ids", type: "before", version: "1", isLoaded: () => true, load: () => Promise.resolve(),
      track: ctx => {{ ids.push([ctx.event.event, ctx.event.messageId]); return ctx; }}}});
    for (var i = 0; i < 12; i++) await analytics.track("Plain " + i, {{tags: ["regular"]}});
    await analytics.track("Vip", {{tags: ["vip"]}});
    await analytics.identify("u1");
    window.__ids = ids;
    window.__loaded = true;
  }})
  .catch(function (e) {{ window.__loadError = String(e); }});
</script></head><body>next</body></html>"""
        serve_site(page, live.url, {"/next.html": html})
        page.route(f"{SITE}/analytics-next.js", lambda route: route.fulfill(
            status=200, body=analytics_next_js, headers={"Content-Type": "application/javascript"}))
        page.goto(f"{SITE}/next.html")
        page.wait_for_function("() => window.__loaded === true || window.__loadError !== undefined")
        assert page.evaluate("window.__loadError") is None
        page.wait_for_timeout(300)
        # What our filters let through, by server/rules.py on the very messageIds analytics-next made:
        clean = workspace.get_destination(engine, pixel["id"])["filters"]
        expected = [name for name, mid in page.evaluate("window.__ids")
                    if apply_filters({"type": "track", "event": name, "messageId": mid,
                                      "properties": {"tags": ["vip" if name == "Vip" else "regular"]}}, clean)[0]]
        assert 0 < len(expected) < 12  # the sample keeps some, not all
        got = [c[2] for c in page.evaluate("window.__fbq") if c[0].startswith("trackSingle")]
        assert got == expected, page.evaluate("window.__fbq")
    finally:
        live.stop()
        engine.dispose()

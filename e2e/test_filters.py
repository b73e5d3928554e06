"""Destination filters in real Chromium: the browser interpreter (js_templates/filters.js) gives
the same answers as server/fql.py on the shared table of cases, and a device-mode destination
(Mixpanel, vendor script stubbed through page.route) gets only what its filters allow."""

from __future__ import annotations

import pytest
from fql_cases import CASES, EVENT
from loader_site import page_fixture
from tests_conftest import LiveServer  # registered by e2e/conftest.py
from vendor_stubs import LoaderSite, calls, run, wait_calls

from server.cdn.bundles import JS_DIR
from server.fql import parse
from server.rules import apply_filters, check_filters, sample_bucket

TOKEN = "0123456789abcdef0123456789abcdef"

FILTER_LISTS = [
    [{"if": 'event = "Button Clicked"', "action": "drop"}],
    [{"if": 'type = "identify"', "action": "only"}],
    [{"if": "true", "action": "drop_properties", "fields": ["properties.price", "context.ip", "traits.none"]}],
    [{"if": "exists(traits.email)", "action": "allow_properties",
      "fields": ["properties.count", "properties.nested.deep.x", "traits.plan", "properties.absent"]}],
    [{"if": "true", "action": "sample", "percent": 50}],
    [{"if": "properties.count > 2", "action": "drop_properties", "fields": ["properties.count"]},
     {"if": "exists(properties.count)", "action": "drop"}],
]
IDS = ["m-1", "", "é😀x", "a" * 40, "0f8fad5b-d9cb-469f-a165-70867728950e", "x", "msg-123", "\u2028"]


@pytest.fixture(scope="module")
def bare(browser):
    """A blank page with the core's helpers and the filter interpreter exactly as bundles ship them."""
    context = browser.new_context()
    page = context.new_page()
    page.set_content("<!doctype html><title>filters</title>")
    page.add_script_tag(content=(JS_DIR / "core" / "00-util.js").read_text() + (JS_DIR / "filters.js").read_text())
    yield page
    context.close()


def test_the_browser_evaluates_every_fql_case_as_the_server_does(bare):
    trees = [parse(condition) for condition, _ in CASES]
    got = bare.evaluate("([trees, e]) => trees.map(t => !!fqlEval(t, e))", [trees, EVENT])
    assert dict(zip([c for c, _ in CASES], got)) == dict(CASES)


def test_the_browser_applies_filter_actions_and_samples_as_the_server_does(bare):
    from server.rules import compiled_filters

    events = [{**EVENT, "messageId": m} for m in IDS]
    for filters in FILTER_LISTS:
        clean = check_filters(filters)
        expected = [apply_filters(e, clean)[0] for e in events]
        got = bare.evaluate("([fs, es]) => es.map(e => applyFilters(fs, e))", [compiled_filters(clean), events])
        assert got == expected, filters
    buckets = bare.evaluate("(ids) => ids.map(fqlBucket)", IDS)
    assert buckets == [sample_bucket(m) for m in IDS]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A live server whose source has Mixpanel in device mode, with filters set through the API
    before any page opens."""
    site = LoaderSite(tmp_path_factory.mktemp("filters"), LiveServer)
    destination = site.add("mixpanel", {"token": TOKEN, "track_all_pages": False, "track_named_pages": False})
    response = site.workspace.http.put(f"/api/v1/destinations/{destination['id']}/filters", json={"filters": [
        {"if": 'match(event, "Internal *") or properties.test = true', "action": "drop"},
        {"if": 'type = "track"', "action": "only"},
        {"if": "true", "action": "drop_properties", "fields": ["properties.email"]},
    ]})
    assert response.status_code == 200, response.text
    yield site
    site.close()


page = page_fixture("mixpanel", lambda c: c and c[0][0] == "init")


def test_a_device_mode_destination_gets_only_what_its_filters_allow(site, page):
    run(page, """
      analytics.track("Internal ping", {n: 1});
      analytics.track("Order Completed", {total: 5, email: "a@b.c"});
      analytics.track("Checkout Started", {test: true});
      analytics.identify("u1", {plan: "pro"});
      analytics.track("Signed Up", {plan: "pro"});
    """)
    recorded = wait_calls(page, "mixpanel", lambda c: any(x[:2] == ["track", "Signed Up"] for x in c))
    page.wait_for_timeout(200)  # nothing else arrives later
    recorded = calls(page, "mixpanel")
    tracked = [c[1:3] for c in recorded if c[0] == "track"]
    assert tracked == [["Order Completed", {"total": 5}], ["Signed Up", {"plan": "pro"}]]
    assert not any(c[0] in ("identify", "people.set") for c in recorded), recorded
    # The collector still stores every event: filters apply to this destination only.
    stored = site.stored_events(lambda rows: len(rows) >= 5)
    assert {r["event"].get("event") for r in stored} >= {"Internal ping", "Checkout Started", "Order Completed"}

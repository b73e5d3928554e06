"""LinkedIn Insight Tag's device-mode loader in real Chromium against a real server."""

from __future__ import annotations

from loader_site import page_fixture, site_fixture
from vendor_stubs import (
    calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable, run, wait_calls,
)

URL = "https://snap.licdn.com/li.lms-analytics/insight.min.js"
CONVERSIONS = {"Order Completed": "1001", "Viewed Pricing Page": "1002", "Demo Requested": 1003}


site = site_fixture("linkedin", {
    "linkedin_insight": {"partner_id": "5432100", "conversions": CONVERSIONS},
    "hotjar": {"site_id": "1234567"},
})
page = page_fixture("linkedin_insight", lambda c: len(c) >= 1)


def conversions_after(page, action, count=1):
    before = len(calls(page, "linkedin_insight"))
    ids = page.evaluate(f"() => {{ {action}; return [] }}")
    assert ids == []
    return wait_calls(page, "linkedin_insight", lambda c: len(c) >= before + count)[before:]


def test_script_requested_once_with_the_partner_id(page):
    assert page.routes.requests["linkedin_insight"] == [URL]
    assert calls(page, "linkedin_insight")[0] == ["partners", ["5432100"]]
    assert page.evaluate("() => window._linkedin_partner_id") == "5432100"


def test_mapped_track_event_is_a_conversion_with_the_message_id(page):
    before = len(calls(page, "linkedin_insight"))
    message_id = page.evaluate("""() => new Promise(r => analytics.track("Demo Requested", {}, {}, ctx => r(ctx.event.messageId)))""")
    new = wait_calls(page, "linkedin_insight", lambda c: len(c) > before)[before:]
    assert new == [["track", {"conversion_id": 1003, "event_id": message_id}]]


def test_spec_event_matches_whatever_its_spelling(page):
    new = conversions_after(page, 'analytics.track("order_completed", {total: 5})')
    assert new[0][0] == "track" and new[0][1]["conversion_id"] == 1001


def test_named_page_counts_as_its_viewed_page_event(page):
    new = conversions_after(page, 'analytics.page("Pricing")')
    assert new[0][1]["conversion_id"] == 1002


def test_unmapped_events_and_pages_are_not_conversions(page):
    before = len(calls(page, "linkedin_insight"))
    run(page, 'analytics.track("Something Else"); analytics.page("About"); analytics.track("Demo Requested")')
    new = wait_calls(page, "linkedin_insight", lambda c: len(c) > before)[before:]
    assert [c[1]["conversion_id"] for c in new] == [1003]


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "linkedin_insight", 'analytics.track("Order Completed", {total: 1})', lambda c: len(c) >= 2)
    assert recorded[0] == ["partners", ["5432100"]]
    assert recorded[1][0] == "track" and recorded[1][1]["conversion_id"] == 1001


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "linkedin_insight")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "linkedin_insight", "hotjar", lambda c, marker: ["event", marker] in c)

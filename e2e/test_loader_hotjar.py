"""Hotjar's device-mode loader in real Chromium against a real server."""

from __future__ import annotations

from loader_site import new_calls_of, page_fixture, site_fixture
from vendor_stubs import (
    calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable, run, wait_calls,
)

URL = "https://static.hotjar.com/c/hotjar-1234567.js?sv=6"


site = site_fixture("hotjar", {
    "hotjar": {"site_id": "1234567"},
    "crisp": {"website_id": "6f1d3c52-8a1b-4c7e-9f21-0a2b3c4d5e6f"},
})
page = page_fixture("hotjar", lambda c: True)  # ready once the stub has taken over window.hj
new_calls = new_calls_of("hotjar")


def test_script_requested_once_with_the_numeric_site_id(page):
    assert page.routes.requests["hotjar"] == [URL]
    assert page.evaluate("() => window._hjSettings") == {"hjid": 1234567, "hjsv": 6}


def test_track_sends_a_hotjar_event(page):
    assert new_calls(page, 'analytics.track("Checkout Opened", {step: 1})') == [["event", "Checkout Opened"]]


def test_identify_sends_user_attributes_without_nested_values(page):
    new = new_calls(page, 'analytics.identify("u-5", {email: "ada@example.com", plan: "pro", address: {city: "Paris"}})')
    assert new == [["identify", "u-5", {"email": "ada@example.com", "plan": "pro"}]]


def test_identify_without_a_user_id_is_not_sent_and_page_is_left_to_hotjar(page):
    before = len(calls(page, "hotjar"))
    run(page, 'analytics.reset(); analytics.identify({plan: "free"}); analytics.page("Home"); analytics.track("Marker")')
    new = wait_calls(page, "hotjar", lambda c: len(c) > before)[before:]
    assert new == [["event", "Marker"]]


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "hotjar", 'analytics.track("Early Bird"); analytics.identify("early")',
        lambda c: len(c) >= 2)
    assert recorded == [["event", "Early Bird"], ["identify", "early", {}]]


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "hotjar")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "hotjar", "crisp",
                         lambda c, marker: any(x[:2] == ["set", "session:event"] and x[2][0][0][0] == marker for x in c))

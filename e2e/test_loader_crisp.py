"""Crisp's device-mode loader in real Chromium against a real server."""

from __future__ import annotations

from loader_site import new_calls_of, page_fixture, site_fixture
from vendor_stubs import calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable

WEBSITE_ID = "6f1d3c52-8a1b-4c7e-9f21-0a2b3c4d5e6f"
URL = "https://client.crisp.chat/l.js"


site = site_fixture("crisp", {
    "crisp": {"website_id": WEBSITE_ID, "locale": "fr"},
    "hotjar": {"site_id": "1234567"},
})
page = page_fixture("crisp", lambda c: len(c) >= 1)
new_calls = new_calls_of("crisp")


def test_script_requested_once_with_website_id_and_language(page):
    assert page.routes.requests["crisp"] == [URL]
    assert calls(page, "crisp")[0] == ["website", WEBSITE_ID, {"locale": "fr"}]


def test_identify_sets_user_fields_and_session_data(page):
    new = new_calls(page, 'analytics.identify("u-3", {email: "ada@example.com", firstName: "Ada", lastName: "L",'
                          ' phone: "+33123456789", plan: "pro", seats: 3, address: {city: "Paris"}})', 4)
    assert ["set", "user:email", ["ada@example.com"]] in new
    assert ["set", "user:phone", ["+33123456789"]] in new
    assert ["set", "user:nickname", ["Ada L"]] in new
    data = next(c for c in new if c[1] == "session:data")[2][0]
    assert ["user_id", "u-3"] in data and ["plan", "pro"] in data and ["seats", 3] in data
    assert not any(k in ("address", "email", "firstName") for k, _ in data)


def test_track_sends_a_session_event_with_scalar_data(page):
    new = new_calls(page, 'analytics.track("Plan Upgraded", {plan: "pro", items: [1, 2]})')
    assert new == [["set", "session:event", [[["Plan Upgraded", {"plan": "pro"}]]]]]


def test_group_sets_the_company(page):
    assert new_calls(page, 'analytics.group("g-1", {name: "Acme"})') == [["set", "user:company", ["Acme"]]]


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "crisp", 'analytics.track("Early Bird")', lambda c: len(c) >= 2)
    assert recorded == [["website", WEBSITE_ID, {"locale": "fr"}], ["set", "session:event", [[["Early Bird", {}]]]]]


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "crisp")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "crisp", "hotjar", lambda c, marker: ["event", marker] in c)

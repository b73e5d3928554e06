"""Intercom Messenger's device-mode loader in real Chromium against a real server."""

from __future__ import annotations

from loader_site import new_calls_of, page_fixture, site_fixture
from vendor_stubs import (
    VendorRoutes, calls, check_blocked_vendor, check_calls_wait_for_the_vendor, check_disable_and_enable,
    open_analytics_next, wait_calls,
)

APP_ID = "abc12345"
URL = "https://widget.intercom.io/widget/abc12345"
BOOT = {"app_id": APP_ID, "api_base": "https://api-iam.eu.intercom.io", "hide_default_launcher": True,
        "custom_launcher_selector": "#help"}


site = site_fixture("intercom", {
    "intercom": {"app_id": APP_ID, "api_base": "https://api-iam.eu.intercom.io",
                 "hide_default_launcher": True, "custom_launcher_selector": "#help",
                 "access_token": "sentinel-secret-token"},
    "hotjar": {"site_id": "1234567"},
})
page = page_fixture("intercom", lambda c: len(c) >= 2)
new_calls = new_calls_of("intercom")


def test_widget_requested_once_and_booted_in_the_region(page):
    assert page.routes.requests["intercom"] == [URL]
    assert calls(page, "intercom")[:2] == [["boot", BOOT], ["update", {}]]  # boot, then the snippet's page()


def test_page_updates_the_messenger(page):
    assert new_calls(page, 'analytics.page("Pricing")') == [["update", {}]]


def test_identify_updates_the_user_with_the_user_hash_from_the_call(page):
    [call] = new_calls(page, """analytics.identify("u-1", {email: "ada@example.com", firstName: "Ada", lastName: "L",
        createdAt: "2024-01-02T00:00:00Z", company: {id: "c1", name: "Acme"}, plan: "pro", tags: ["a"]},
        {integrations: {Intercom: {user_hash: "0f1e2d"}}})""")
    assert call == ["update", {
        "user_id": "u-1", "email": "ada@example.com", "firstName": "Ada", "lastName": "L", "name": "Ada L",
        "created_at": 1704153600, "company": {"company_id": "c1", "name": "Acme"}, "plan": "pro",
        "user_hash": "0f1e2d"}]


def test_group_updates_the_company(page):
    [call] = new_calls(page, 'analytics.group("g-1", {name: "Acme", plan: "scale", monthly_spend: 99})')
    assert call == ["update", {"company": {"company_id": "g-1", "name": "Acme", "plan": "scale", "monthly_spend": 99}}]


def test_track_sends_trackevent_with_scalar_metadata(page):
    [call] = new_calls(page, 'analytics.track("Article Read", {slug: "intro", tags: ["x"], revenue: 1.5})')
    assert call == ["trackEvent", "Article Read", {"slug": "intro", "price": {"amount": 150, "currency": "USD"}}]


def test_order_completed_sends_its_total_as_a_price_in_cents(page):
    [call] = new_calls(page, 'analytics.track("order_completed", {order_id: "o1", total: 25, currency: "EUR"})')
    assert call == ["trackEvent", "order_completed", {"order_id": "o1", "total": 25,
                                                       "price": {"amount": 2500, "currency": "EUR"}}]


def test_calls_before_the_script_arrives_are_delivered_after(site, browser):
    recorded = check_calls_wait_for_the_vendor(
        site, browser, "intercom", 'analytics.track("Early Bird"); analytics.identify("early")',
        lambda c: len(c) >= 4)
    assert recorded[0] == ["boot", BOOT]
    assert ["trackEvent", "Early Bird", {}] in recorded and ["update", {"user_id": "early"}] in recorded


def test_disabling_removes_the_loader_and_enabling_restores_it(site, browser):
    check_disable_and_enable(site, browser, "intercom")


def test_blocked_script_leaves_other_destinations_and_the_collector_working(site, browser):
    check_blocked_vendor(site, browser, "intercom", "hotjar", lambda c, marker: ["event", marker] in c)


def test_runs_as_an_analytics_next_remote_plugin(site, browser):
    context = browser.new_context()
    try:
        VendorRoutes().install(context)
        page = open_analytics_next(context, site, 'analytics.identify("next-user", {email: "n@example.com"}, '
                                                  '{integrations: {Intercom: {user_hash: "abc123"}}});')
        recorded = wait_calls(page, "intercom", lambda c: any(x[0] == "update" and x[1].get("user_id") for x in c))
        assert recorded[0] == ["boot", BOOT]
        update = next(x for x in recorded if x[0] == "update" and x[1].get("user_id"))[1]
        assert update == {"user_id": "next-user", "email": "n@example.com", "user_hash": "abc123"}
    finally:
        context.close()

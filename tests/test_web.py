"""The web app through HTTP (Starlette's TestClient on a real database): sign-in, sessions,
CSRF, the add-destination flow, secrets, history and the route guard."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from server.app import create_app
from server.config import Config
from server.demo import seed_demo
from server.store import open_store, workspace
from server.store import web as web_store
from server.web import throttle
from server.web import accounts

PASSWORD = "correct horse battery"
PLANES = ["server.health", "server.admin", "server.cdn", "server.ingest", "server.demo", "server.web",
          "server.warehouse"]
HTML = {"accept": "text/html"}


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _web_client(url):
    config = Config(database_url=url, delivery_workers=False, admin_password=PASSWORD)
    engine = open_store(url)
    accounts.ensure_admin(config, engine)
    seed_demo(engine)
    app = create_app(config, engine=engine, planes=PLANES)
    with TestClient(app, raise_server_exceptions=True) as client:
        client.engine = engine
        yield client
    engine.dispose()


@pytest.fixture
def web(sqlite_url):
    """Most tests: SQLite. The store's behaviour on PostgreSQL is covered by ``web_any`` below."""
    yield from _web_client(sqlite_url)


@pytest.fixture
def web_any(db_url):
    """Sign-in, throttling, CSRF and the add-destination flow, on SQLite and on PostgreSQL."""
    yield from _web_client(db_url)


def sign_in(client, password=PASSWORD, username="admin"):
    token = _csrf(client.get("/sign-in").text)
    return client.post("/sign-in", data={"csrf_token": token, "username": username, "password": password,
                                         "next": "/sources"}, follow_redirects=False)


@pytest.fixture
def signed_in(web):
    assert sign_in(web).status_code == 303
    web.csrf = _csrf(web.get("/sources").text)
    return web


@pytest.fixture
def signed_in_any(web_any):
    assert sign_in(web_any).status_code == 303
    web_any.csrf = _csrf(web_any.get("/sources").text)
    return web_any


def test_every_web_route_redirects_to_sign_in_when_signed_out(web):
    web_routes = [r for r in web.app.routes if isinstance(r, Route) and r.endpoint.__module__.startswith("server.web")]
    public = {("/sign-in", "GET"), ("/sign-in", "POST")}
    checked = 0
    for route in web_routes:
        for method in route.methods - {"HEAD"}:
            if (route.path, method) in public:
                continue
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            if "{slug" in route.path:
                path = re.sub(r"\{slug[^}]*\}", "google_analytics_4", route.path)
                path = re.sub(r"\{[^}]+\}", "1", path)
            response = web.request(method, path, follow_redirects=False)
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/sign-in"), (method, path)
            checked += 1
    assert checked >= 20  # every page and every form action of the plane


def test_sign_in_sets_a_signed_httponly_samesite_cookie_and_sign_out_ends_it(web):
    response = sign_in(web)
    assert response.status_code == 303 and response.headers["location"] == "/sources"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert web.get("/sources", follow_redirects=False).status_code == 200
    token = _csrf(web.get("/sources").text)
    assert web.post("/sign-out", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert web.get("/sources", follow_redirects=False).status_code == 303


def test_a_tampered_session_cookie_is_not_a_session(web):
    sign_in(web)
    value = web.cookies.get("switchboard_session")
    web.cookies.clear()
    web.cookies.set("switchboard_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert web.get("/sources", follow_redirects=False).status_code == 303


def test_wrong_password_is_refused_and_the_sixth_try_in_a_minute_gets_429(web_any):
    web = web_any
    for _ in range(throttle.PER_ADDRESS_ACCOUNT):
        response = sign_in(web, password="nope")
        assert response.status_code == 401
        assert "do not match" in response.text
    blocked = sign_in(web)  # even the right password waits now
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "60"
    assert "Too many failed sign-ins" in blocked.text
    assert web.get("/sources", follow_redirects=False).status_code == 303
    # Another user name from the same address is counted separately.
    assert sign_in(web, username="someone-else").status_code == 401


def test_next_only_redirects_within_the_site(web):
    token = _csrf(web.get("/sign-in").text)
    response = web.post("/sign-in", data={"csrf_token": token, "username": "admin", "password": PASSWORD,
                                          "next": "//evil.example/x"}, follow_redirects=False)
    assert response.headers["location"] == "/sources"


def test_a_form_post_without_a_valid_csrf_token_is_rejected(signed_in_any):
    signed_in = signed_in_any
    before = workspace.count_sources(signed_in.engine)
    missing = signed_in.post("/sources", data={"name": "Sneaky"})
    assert missing.status_code == 403 and missing.json()["code"] == "csrf_failed"
    wrong = signed_in.post("/sources", data={"name": "Sneaky", "csrf_token": "x" * 43}, headers=HTML)
    assert wrong.status_code == 403 and "CSRF" in wrong.text
    assert workspace.count_sources(signed_in.engine) == before
    ok = signed_in.post("/sources", data={"name": "Shop", "csrf_token": signed_in.csrf}, follow_redirects=False)
    assert ok.status_code == 303 and workspace.count_sources(signed_in.engine) == before + 1


def test_sign_in_itself_needs_the_csrf_token(web):
    response = web.post("/sign-in", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 403
    assert web.get("/sources", follow_redirects=False).status_code == 303


def test_wrong_measurement_id_shows_the_field_error_and_saves_nothing(signed_in):
    response = signed_in.post("/catalog/google_analytics_4/configure", headers=HTML, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "measurement_id": "UA-1234"})
    assert response.status_code == 422
    assert 'id="setting-measurement_id-error"' in response.text
    assert "Measurement ID &#39;UA-1234&#39; does not look right" in response.text
    assert workspace.list_destinations(signed_in.engine, 1) == []


def test_add_ga4_then_enable_it_changes_the_public_config(signed_in_any):
    signed_in = signed_in_any
    response = signed_in.post("/catalog/google_analytics_4/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "measurement_id": "G-TEST123"})
    assert response.status_code == 303
    dest_url = response.headers["location"]
    page = signed_in.get(dest_url + "?format=json").json()
    assert page["destination"]["enabled"] is False and page["destination"]["settings"]["measurement_id"] == "G-TEST123"
    enabled = signed_in.post(dest_url + "/enabled", data={"csrf_token": signed_in.csrf, "enabled": "true"})
    assert "Enabled. Browsers load it with the next bundle, within 60 s" in enabled.text
    key = workspace.get_source(signed_in.engine, 1)["write_key"]
    (dest,) = workspace.public_config(signed_in.engine, key)["destinations"]
    assert dest["enabled"] is True and dest["settings"]["measurement_id"] == "G-TEST123"
    signed_in.post(dest_url + "/enabled", data={"csrf_token": signed_in.csrf, "enabled": "false"})
    (dest,) = workspace.public_config(signed_in.engine, key)["destinations"]
    assert dest["enabled"] is False


def test_enabling_without_required_settings_says_what_is_missing(signed_in):
    response = signed_in.post("/catalog/google_analytics_4/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device"})
    dest_url = response.headers["location"]
    enable = signed_in.post(dest_url + "/enabled", headers=HTML, data={"csrf_token": signed_in.csrf, "enabled": "true"})
    assert enable.status_code == 422 and "Measurement ID is required for device mode" in enable.text
    assert signed_in.get(dest_url + "?format=json").json()["destination"]["enabled"] is False


def test_secret_values_never_reach_the_page(signed_in_any):
    signed_in = signed_in_any
    secret, header = "s3cr3t-shared-value", "Bearer very-private-token"
    response = signed_in.post("/catalog/webhooks/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook",
        "shared_secret": secret, "headers.k": ["Authorization", ""], "headers.v": [header, ""]})
    dest_url = response.headers["location"]
    stored = workspace.get_destination(signed_in.engine, int(dest_url.rsplit("/", 1)[1]))["settings"]
    assert stored["shared_secret"] == secret and stored["headers"] == {"Authorization": header}
    # Saving the form again with the secret left empty keeps it.
    signed_in.post(dest_url + "/settings", data={"csrf_token": signed_in.csrf, "url": "https://example.com/other",
                                                 "shared_secret": "", "headers.k": [""], "headers.v": [""]})
    stored = workspace.get_destination(signed_in.engine, int(dest_url.rsplit("/", 1)[1]))["settings"]
    assert stored["shared_secret"] == secret and stored["url"] == "https://example.com/other"
    assert stored["headers"] == {"Authorization": header}
    for url in (dest_url, dest_url + "?format=json", "/sources/1", "/sources/1/history",
                "/sources/1/history/diff?a=1&b=3", "/sources/1/history?format=json"):
        body = signed_in.get(url).text
        assert secret not in body and "very-private-token" not in body, url
    assert "saved — leave empty to keep it" in signed_in.get(dest_url).text


def test_catalog_recommends_the_trio_to_a_source_without_them(signed_in):
    data = signed_in.get("/catalog?source=1&format=json").json()
    assert [t["category"] for t in data["recommended"]] == ["Analytics", "Email Marketing", "Live Chat"]
    assert len(data["destinations"]) == 14
    assert signed_in.post("/catalog/crisp/configure", data={"csrf_token": signed_in.csrf, "source": "1", "mode": "device",
                                                     "website_id": "0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f"}, follow_redirects=False).status_code == 303
    assert signed_in.get("/catalog?source=1&format=json").json()["recommended"] == []
    assert signed_in.get("/catalog?format=json").json()["recommended"] == []


def test_summary_page_lists_modes_calls_needs_and_the_duplicate_warning(signed_in):
    data = signed_in.get("/catalog/google_analytics_4?format=json").json()
    assert [m["mode"] for m in data["modes"]] == ["device", "cloud"]
    assert "track" in data["modes"][0]["calls"]
    assert {n["label"] for n in data["needs"]} == {"Measurement ID", "Measurement Protocol API secret"}
    html = signed_in.get("/catalog/google_analytics_4").text
    assert "remove it" in html and "duplicated" in html


def test_history_lists_versions_diffs_and_rolls_back(signed_in_any):
    signed_in = signed_in_any
    r = signed_in.post("/catalog/google_analytics_4/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "measurement_id": "G-FIRST"})
    dest_url = r.headers["location"]
    signed_in.post(dest_url + "/settings", data={"csrf_token": signed_in.csrf, "measurement_id": "G-SECOND"})
    history = signed_in.get("/sources/1/history?format=json").json()
    assert [v["version"] for v in history["versions"]] == [3, 2, 1]
    assert history["versions"][0]["actor"] == "admin"
    assert "measurement_id" in history["versions"][0]["summary"]
    diff = signed_in.get("/sources/1/history/diff?a=2&b=3&format=json").json()
    assert any(line["kind"] == "del" and "G-FIRST" in line["text"] for line in diff["lines"])
    assert any(line["kind"] == "add" and "G-SECOND" in line["text"] for line in diff["lines"])
    signed_in.post("/sources/1/history/2/rollback", data={"csrf_token": signed_in.csrf})
    key = workspace.get_source(signed_in.engine, 1)["write_key"]
    config = workspace.public_config(signed_in.engine, key)
    assert config["settings_version"] == 4
    assert config["destinations"][0]["settings"]["measurement_id"] == "G-FIRST"


def test_pages_for_missing_things_are_404s_not_500s(signed_in):
    for url in ("/sources/999", "/destinations/999", "/catalog/nope", "/sources/999/history",
                "/sources/999/debugger", "/sources/1/history/diff?a=1&b=99"):
        response = signed_in.get(url)
        assert response.status_code == 404, url
        assert response.json()["code"] == "not_found"
    assert signed_in.get("/sources/1/history/diff?a=x").status_code == 400


def test_ensure_admin_creates_the_account_once_with_a_hashed_password(sqlite_url):
    engine = open_store(sqlite_url)
    config = Config(database_url=sqlite_url)
    user, password = accounts.ensure_admin(config, engine)
    assert user == "admin" and password and len(password) >= 12
    assert accounts.ensure_admin(config, engine) == ("admin", None)  # printed once only
    stored = web_store.get_user(engine, "admin")["password_hash"]
    assert password not in stored and stored.startswith("scrypt$")
    assert accounts.authenticate(engine, "admin", password)
    assert not accounts.authenticate(engine, "admin", password + "x")
    assert not accounts.authenticate(engine, "nobody", password)


def test_source_page_shows_the_bundle_as_served(signed_in):
    signed_in.post("/catalog/google_analytics_4/configure", data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "measurement_id": "G-BUNDLE1"})
    signed_in.post("/destinations/1/enabled", data={"csrf_token": signed_in.csrf, "enabled": "true"})
    data = signed_in.get("/sources/1?format=json").json()
    bundle = data["bundle"]
    assert bundle["served"] and bundle["version"] == 3 and bundle["loaders"] == ["Google Analytics 4"]
    served = signed_in.get(bundle["url"].split("8000", 1)[1], headers={"accept-encoding": "identity"})
    assert served.status_code == 200 and len(served.content) == bundle["size"]
    assert served.headers["etag"] == bundle["etag"] and bundle["gzip_size"] < bundle["size"]
    assert data["source"]["write_key"] in data["snippet"] and "analytics.min.js" in data["snippet"]


def test_debugger_event_detail_says_where_the_event_goes(signed_in):
    signed_in.post("/catalog/webhooks/configure", data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook"})
    signed_in.post("/destinations/1/enabled", data={"csrf_token": signed_in.csrf, "enabled": "true"})
    key = workspace.get_source(signed_in.engine, 1)["write_key"]
    sent = signed_in.post("/v1/track", json={"writeKey": key, "event": "Signed Up", "userId": "u-1",
                                             "messageId": "m-debugger-1"})
    assert sent.status_code == 200
    page = signed_in.get("/sources/1/debugger?format=json").json()
    (event,) = page["events"]
    assert event["type"] == "track" and event["name"] == "Signed Up" and event["user"] == "u-1"
    detail = signed_in.get(f"/sources/1/debugger/events/{event['id']}").json()
    assert detail["event"]["messageId"] == "m-debugger-1"
    (routed,) = detail["routed_to"]
    assert routed["name"] == "Webhooks" and routed["routed"] is True and "cloud mode" in routed["reason"]
    assert signed_in.get(f"/sources/2/debugger/events/{event['id']}").status_code == 404


def test_debugger_routed_to_reflects_consent_in_both_modes(signed_in):
    """Consent categories entered in the web form (one per line) gate device and cloud mode alike."""
    for slug, mode, fields in (("webhooks", "cloud", {"url": "https://example.com/hook"}),
                               ("google_analytics_4", "device", {"measurement_id": "G-CONSENT1"})):
        r = signed_in.post(f"/catalog/{slug}/configure", follow_redirects=False, data={
            "csrf_token": signed_in.csrf, "source": "1", "mode": mode, **fields,
            "consent_categories": "Advertising\n\n  Analytics  " if mode == "cloud" else "Analytics"})
        assert r.status_code == 303, r.text
        signed_in.post(r.headers["location"] + "/enabled", data={"csrf_token": signed_in.csrf, "enabled": "true"})
    hook, _ = workspace.list_destinations(signed_in.engine, 1)
    assert hook["settings"]["consent_categories"] == ["Advertising", "Analytics"]
    key = workspace.get_source(signed_in.engine, 1)["write_key"]

    def routed(message_id, **options):
        sent = signed_in.post("/v1/track", json={"writeKey": key, "event": "Viewed", "userId": "u-1",
                                                 "messageId": message_id, **options})
        assert sent.status_code == 200
        (event,) = [e for e in signed_in.get("/sources/1/debugger?format=json").json()["events"]
                    if e["name"] == "Viewed" and e["id"] not in seen]
        seen.add(event["id"])
        detail = signed_in.get(f"/sources/1/debugger/events/{event['id']}").json()
        return {d["mode"]: (d["routed"], d["reason"]) for d in detail["routed_to"]}

    seen: set[int] = set()
    only_analytics = routed("m-consent-1", context={"consent": {"categoryPreferences": {
        "Advertising": False, "Analytics": True}}})
    assert only_analytics["device"] == (True, "handed to its loader in the visitor's browser (device mode); whether "
                                        "the vendor's script loaded there is not reported to this server")
    assert only_analytics["cloud"] == (False, "the visitor has not consented to Advertising")
    nothing = routed("m-consent-2", context={"consent": {"categoryPreferences": {}}})
    assert nothing["device"] == (False, "the visitor has not consented to Analytics")
    assert nothing["cloud"] == (False, "the visitor has not consented to Advertising, Analytics")
    everything = routed("m-consent-3", context={"consent": {"categoryPreferences": {
        "Advertising": True, "Analytics": True}}})
    assert everything["device"][0] is True and everything["cloud"] == (True, "sent by Switchboard's server (cloud mode)")
    no_consent_object = routed("m-consent-4")  # e.g. a server-side SDK: not gated, as in Segment
    assert no_consent_object["device"][0] is True and no_consent_object["cloud"][0] is True


def test_warehouse_destination_syncs_from_the_web_app(signed_in, tmp_path):
    key = workspace.get_source(signed_in.engine, 1)["write_key"]
    assert signed_in.post("/v1/page", json={"writeKey": key, "name": "Home", "anonymousId": "a-1"}).status_code == 200
    r = signed_in.post("/catalog/warehouse/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "target": "sqlite",
        "sqlite_path": str(tmp_path / "wh.db")})
    dest_url = r.headers["location"]
    signed_in.post(dest_url + "/enabled", data={"csrf_token": signed_in.csrf, "enabled": "true"})
    done = signed_in.post(dest_url + "/sync", data={"csrf_token": signed_in.csrf}, headers=HTML)
    assert "Synced 1 event." in done.text
    syncs = signed_in.get(dest_url + "?format=json").json()["syncs"]
    assert syncs["syncs"][0]["status"] == "succeeded" and syncs["syncs"][0]["trigger"] == "web"
    assert str(tmp_path / "wh.db") not in signed_in.get(dest_url).text  # a secret setting
    from server.store import audit
    [entry] = audit.list_entries(signed_in.engine, action="warehouse.sync")
    assert entry["actor"] == "admin" and entry["changes"]["summary"] == "Synced the warehouse (web): loaded 1 event"


def test_delivery_chart_stacks_each_hour_on_a_whole_number_scale():
    from server.web.chart import bars

    points = [{"hour": f"2026-01-01T{h:02d}:00:00+00:00", "delivered": 0, "retrying": 0, "dead": 0} for h in range(24)]
    points[22].update(delivered=6, retrying=2, dead=1)
    chart = bars(points)
    assert [t["text"] for t in chart["ticks"]] == ["0", "5", "10"]
    stacked = [r for r in chart["rects"] if r["title"].startswith("22:00")]
    assert [r["series"] for r in stacked] == ["delivered", "retrying", "dead"]
    assert stacked[0]["y"] + stacked[0]["h"] == chart["base"]  # delivered sits on the axis
    assert stacked[1]["y"] + stacked[1]["h"] == stacked[0]["y"]  # retrying on top of it
    assert chart["totals"] == {"delivered": 6, "retrying": 2, "dead": 1}


def test_routing_follows_the_integrations_option_and_each_modes_calls(catalog):
    from server.web.routing import routed_to

    dests = [
        {"id": 1, "slug": "google_analytics_4", "mode": "device", "enabled": True, "settings": {}},
        {"id": 2, "slug": "webhooks", "mode": "cloud", "enabled": True, "settings": {}},
        {"id": 3, "slug": "mixpanel", "mode": "cloud", "enabled": False, "settings": {}},
    ]
    alias = {"type": "alias", "integrations": {"All": False, "Webhook": True}}
    result = {r["id"]: r for r in routed_to(catalog, dests, alias)}
    assert result[1]["routed"] is False and "does not take alias" in result[1]["reason"]
    assert result[2]["routed"] is True  # its alias "Webhook" overrides All: false
    assert result[3]["routed"] is False and result[3]["reason"] == "destination is disabled"
    track = {"type": "track", "integrations": {"Google Analytics 4": False}}
    result = {r["id"]: r for r in routed_to(catalog, dests, track)}
    assert result[1]["routed"] is False and result[2]["routed"] is True
    # Consent: the same rule in both modes; the integrations option is checked first.
    dests[0]["settings"] = {"measurement_id": "G-ABC123", "consent_categories": ["C0004"]}
    dests[1]["settings"] = {"consent_categories": ["C0002", "C0004"]}
    granted = {"type": "track", "context": {"consent": {"categoryPreferences": {"C0002": True, "C0004": 1}}}}
    result = {r["id"]: r for r in routed_to(catalog, dests, granted)}
    assert result[1]["reason"] == result[2]["reason"] == "the visitor has not consented to C0004"  # 1 is not true
    malformed = {"type": "track", "context": {"consent": {"categoryPreferences": ["C0002", "C0004"]}}}
    result = {r["id"]: r for r in routed_to(catalog, dests, malformed)}
    assert result[1]["routed"] is False and result[2]["routed"] is False
    off = {**malformed, "integrations": {"All": False}}
    assert {r["reason"] for r in routed_to(catalog, dests, off)} >= {"turned off by the event's integrations option"}


def test_a_destination_can_get_what_cloud_mode_needs_and_then_switch_to_it(signed_in):
    r = signed_in.post("/catalog/google_analytics_4/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "measurement_id": "G-MODES1"})
    dest_url = r.headers["location"]
    signed_in.post(dest_url + "/enabled", data={"csrf_token": signed_in.csrf, "enabled": "true"})
    page = signed_in.get(dest_url).text
    assert "Measurement Protocol API secret <span class=\"req\">(required for cloud mode)</span>" in page
    assert "Cookie domain <span class=\"only\">(device mode only)</span>" in page
    refused = signed_in.post(dest_url + "/mode", data={"csrf_token": signed_in.csrf, "mode": "cloud"}, headers=HTML)
    assert refused.status_code == 422 and "Measurement Protocol API secret is required for cloud mode" in refused.text
    signed_in.post(dest_url + "/settings", data={"csrf_token": signed_in.csrf, "measurement_id": "G-MODES1",
                                                 "api_secret": "mp-secret-123", "send_user_id": "true"})
    switched = signed_in.post(dest_url + "/mode", data={"csrf_token": signed_in.csrf, "mode": "cloud"})
    assert switched.status_code == 200 and "Switched to cloud mode." in switched.text
    dest = workspace.get_destination(signed_in.engine, int(dest_url.rsplit("/", 1)[1]))
    assert dest["mode"] == "cloud" and dest["settings"]["api_secret"] == "mp-secret-123"
    assert "mp-secret-123" not in switched.text


def test_destinations_that_need_consent_say_so_on_the_source_and_destination_pages(signed_in):
    signed_in.post("/catalog/google_analytics_4/configure", data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "measurement_id": "G-CONSENT1",
        "consent_categories": "Analytics\nAdvertising"})
    signed_in.post("/catalog/hotjar/configure", data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "site_id": "1234567"})
    source_page = signed_in.get("/sources/1").text
    assert source_page.count("consent: Analytics, Advertising") == 1  # GA4 only, not Hotjar
    assert "consent: Analytics, Advertising" in signed_in.get("/destinations/1").text
    assert "consent:" not in signed_in.get("/destinations/2").text
    listed = signed_in.get("/sources/1?format=json").json()["destinations"]
    assert [d["settings"]["consent_categories"] for d in listed] == [["Analytics", "Advertising"], []]


def test_the_event_tester_explains_an_unusable_proxy_instead_of_failing(signed_in, monkeypatch):
    signed_in.post("/catalog/webhooks/configure", data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook"})
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.corp:1080")  # SOCKS is not supported
    answer = signed_in.post("/destinations/1/test", data={"csrf_token": signed_in.csrf, "type": "track"})
    assert answer.status_code == 200
    assert "Cannot send from this server" in answer.text and "socks" in answer.text

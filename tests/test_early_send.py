"""The collector's ``/e`` (server/ingest/early.py): the snippet's compact early send, expanded into
the event the bundle would build, then stored the normal way (dedupe, the same 200, 4xx with a
code and a message, never a 500). In process (Starlette's TestClient, real SQLite)."""

from __future__ import annotations

import base64
import copy

import orjson
import pytest
from starlette.testclient import TestClient
from test_collector import ORIGIN, Tracking, _tracking, assert_ok, assert_refused

from server.errors import ApiError
from server.ingest.early import expand
from server.store import workspace

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

BPC = {"__t": "bpc", "c": None, "p": "/shop", "u": "https://shop.example/shop?x=1#top", "s": "?x=1", "t": "Shop", "r": "",
       "a": "anon-1"}
IDS = {"messageId": "sb-1767225600123-0b4f3c0e-1111-4222-8333-944445555666", "timestamp": 1767225600123, "userId": None}
FACTS = ("switchboard.js", "1.0.0", ("Google Analytics 4", "Hotjar"), ("Hotjar",))
UAD = {"brands": [{"brand": "Chromium", "version": "131"}], "mobile": False, "platform": "Linux"}


def compact(key, method="page", args=(), bpc=BPC, ids=IDS, initial=True, canonical=None):
    """The array of a snippet pasted in the earlier form: ids {messageId, timestamp, userId}."""
    return [key, method, list(args), bpc, ids, initial, canonical, "fr-FR", "UA/1", "Europe/Paris", 1280, 720, 2, UAD]


def current(key, method="page", args=(), bpc=BPC, ids=IDS, initial=True, canonical=None):
    """The same call as the current snippet posts it: the messageId (with its time in it) in place
    of the ids, the userId as bpc.i."""
    return [key, method, list(args), {**bpc, "i": ids["userId"]}, ids["messageId"], initial, canonical, "fr-FR", "UA/1",
            "Europe/Paris", 1280, 720, 2, UAD]


# Both forms, each test: snippets pasted in the earlier form keep running on sites for years.
FORMS = pytest.mark.parametrize("compact", [compact, current], ids=["earlier", "current"])


@pytest.fixture
def tracking(engine, catalog):
    """A source with two device-mode destinations, GA4 not taking the initial page."""
    app, source = _tracking(engine, catalog)
    workspace.add_destination(engine, source["id"], slug="hotjar", mode="device", enabled=True, settings={"site_id": "1"})
    ga4 = workspace.add_destination(engine, source["id"], slug="google_analytics_4", mode="device", enabled=True,
                                    settings={"measurement_id": "G-1", "track_initial_page": False})
    with TestClient(app, raise_server_exceptions=False) as client:
        t = Tracking(client, engine, source)
        t.ga4 = ga4
        yield t


@SQLITE
@FORMS
def test_a_page_is_stored_as_the_bundle_would_have_sent_it(tracking, compact):
    assert_ok(tracking.post("/v1/e", compact(tracking.key, args=["Cat", "Shop", {"title": "Mine", "k": 1}])))
    (event,) = tracking.stored()
    page = {"path": "/shop", "referrer": "", "search": "?x=1", "title": "Shop", "url": "https://shop.example/shop?x=1"}
    assert event["type"] == "page" and event["name"] == "Shop" and event["category"] == "Cat"
    assert event["properties"] == {**page, "title": "Mine", "k": 1, "name": "Shop", "category": "Cat"}
    context = event["context"]
    assert context["page"] == {**page, "title": "Mine"}
    assert context["library"] == {"name": "switchboard.js", "version": "1.0.0"} and context["locale"] == "fr-FR"
    assert context["screen"] == {"width": 1280, "height": 720, "density": 2} and context["userAgent"] == "UA/1"
    assert context["timezone"] == "Europe/Paris" and context["userAgentData"] == UAD and context["ip"]
    assert event["messageId"] == IDS["messageId"] and event["anonymousId"] == "anon-1" and event["userId"] is None
    assert event["originalTimestamp"] == "2026-01-01T00:00:00.123Z" and event["sentAt"] == event["originalTimestamp"]
    # The initial page: only destinations that take it are marked as served in the browser.
    assert event["integrations"] == {"Hotjar": False} and event["_metadata"] == {"bundled": ["Hotjar"]}
    assert "writeKey" not in event


@SQLITE
@FORMS
def test_a_track_and_a_later_page_are_marked_for_every_device_mode_destination(tracking, compact):
    ids = {**IDS, "messageId": "sb-2-x", "userId": "user-7"}
    assert_ok(tracking.post("/v1/e", compact(tracking.key, "track", ["Bought", {"n": 1}], ids=ids, initial=False)))
    page_ids = {**IDS, "messageId": "sb-3-y"}
    canonical = "https://shop.example/c/1"
    bpc = {**BPC, "c": "/c/1"}
    assert_ok(tracking.post("/v1/e", compact(tracking.key, "page", [], bpc=bpc, ids=page_ids, initial=False, canonical=canonical)))
    track, page = tracking.stored()
    assert track["event"] == "Bought" and track["properties"] == {"n": 1} and track["userId"] == "user-7"
    assert track["integrations"] == {"Google Analytics 4": False, "Hotjar": False}
    assert track["_metadata"] == {"bundled": ["Google Analytics 4", "Hotjar"]}
    assert page["context"]["page"]["url"] == "https://shop.example/c/1?x=1" and page["context"]["page"]["path"] == "/c/1"


@SQLITE
@FORMS
def test_the_same_early_send_twice_is_stored_once(tracking, compact):
    body = compact(tracking.key, "track", ["Twice"])
    assert_ok(tracking.post("/v1/e", body))
    assert_ok(tracking.post("/v1/e", body))
    assert [e["event"] for e in tracking.stored()] == ["Twice"]


@SQLITE
@FORMS
def test_a_call_with_options_is_refused_for_the_bundle_to_send(tracking, compact):
    response = tracking.post("/v1/e", compact(tracking.key, "track", ["X", {}, {"context": {"ip": "1.2.3.4"}}]))
    assert_refused(tracking, response, 409, "early_send_refused", "options")
    response = tracking.post("/v1/e", compact(tracking.key, "page", ["Home", {}, {"integrations": {}}]))
    assert_refused(tracking, response, 409, "early_send_refused", "options")


@SQLITE
@FORMS
def test_a_track_without_a_name_or_a_page_with_utm_parameters_is_refused(tracking, compact):
    assert_refused(tracking, tracking.post("/v1/e", compact(tracking.key, "track", [""])), 400, "invalid_early_event", "event name")
    bpc = {**BPC, "s": "?utm_source=news"}
    assert_refused(tracking, tracking.post("/v1/e", compact(tracking.key, bpc=bpc)), 400, "invalid_early_event", "utm_")


@SQLITE
@FORMS
def test_an_unknown_write_key_is_a_401(tracking, compact):
    assert_refused(tracking, tracking.post("/v1/e", compact("nope")), 401, "invalid_write_key", "write key")


@SQLITE
@FORMS
def test_the_key_that_authenticates_is_the_one_whose_source_decides(tracking, compact):
    # As on every Tracking API route: the body's key when it has one, else the Basic auth user.
    # The source's early-send facts used to be read for the array's key even when empty, so an
    # early send authenticated by Basic auth was refused for "consent categories or filters"
    # that its source did not have.
    basic = {"Authorization": "Basic " + base64.b64encode(f"{tracking.key}:".encode()).decode()}
    # A key in the array wins over the header: here an unknown one.
    assert_refused(tracking, tracking.post("/v1/e", compact("nope"), headers=basic),
                   401, "invalid_write_key", "No source has this write key")
    assert_refused(tracking, tracking.post("/v1/e", compact("")), 401, "missing_write_key", "Basic auth")
    assert_ok(tracking.post("/v1/e", compact(""), headers=basic))
    assert_ok(tracking.post("/v1/e", compact(None, ids={**IDS, "messageId": "sb-1767225600124-null-key"}), headers=basic))
    (first, second) = tracking.stored()
    assert first["integrations"] == {"Hotjar": False} and second["messageId"] == "sb-1767225600124-null-key"


@SQLITE
@FORMS
def test_a_snippet_pasted_before_consent_categories_were_added_is_refused(tracking, compact):
    """The collector decides from the source as it is now (the change reaches its cache at once),
    not as the pasted snippet was rendered."""
    assert_ok(tracking.post("/v1/e", compact(tracking.key)))
    workspace.update_destination(tracking.engine, tracking.ga4["id"],
                                 settings={"measurement_id": "G-1", "consent_categories": ["Analytics"]})
    response = tracking.post("/v1/e", compact(tracking.key, ids={**IDS, "messageId": "sb-1767225600125-later"}))
    assert response.status_code == 409 and response.json()["code"] == "early_send_refused", response.text
    assert "consent categories" in response.json()["message"]
    assert [e["messageId"] for e in tracking.stored()] == [IDS["messageId"]]


@SQLITE
@FORMS
def test_malformed_bodies_get_a_4xx_with_a_code_never_a_500(tracking, compact):
    good = compact(tracking.key, "track", ["Ok", {"a": 1}])
    broken = [None, {}, [], "x", 1, good[:-1], good + [1]]
    for index in range(len(good)):
        for value in (None, "s", 1, 1.5, [], {}, True, [1, "a"], {"messageId": 1}):
            body = copy.deepcopy(good)
            body[index] = value
            broken.append(body)
    for key in IDS:
        broken.append([*good[:4], {**IDS, key: [1]}, *good[5:]])
    for key in "cpusrta":
        broken.append([*good[:3], {**BPC, key: 5}, *good[4:]])
    broken.append([*good[:4], {**IDS, "timestamp": 10**15}, *good[5:]])
    broken.append([*good[:3], {**BPC, "c": "x"}, *good[4:6], "http://[::1", *good[7:]])
    broken.append([*good[:2], [{"event": "E", "properties": "not an object"}], *good[3:]])
    # The current form's messageId (its time) and bpc.i.
    for message_id in ("", "sb-", "sb-x-1", "sb--1", "sb-9999999999999999-x", "sb-99999999999999999-x", "sb-\u0661\u0662-x"):
        broken.append([*good[:4], message_id, *good[5:]])
    for user_id in (5, [], {}, True):
        broken.append([*good[:3], {**BPC, "i": user_id}, "sb-1-x", *good[5:]])
    for body in broken:
        response = tracking.post("/v1/e", None, raw=orjson.dumps(body))
        assert response.status_code != 500, (body, response.text)
        if response.status_code != 200:
            assert set(response.json()) >= {"code", "message"}, response.text
            assert response.headers["access-control-allow-origin"] == ORIGIN
    assert tracking.post("/v1/e", None, raw=b"[1,").json()["code"] == "malformed_json"


@FORMS
def test_expand_is_the_bundles_argument_rules(compact):
    page = lambda *args: expand(compact("k", "page", args), FACTS)  # noqa: E731
    assert page("Home")["name"] == "Home" and "category" not in page("Home")
    assert page("Home", {"a": 1})["properties"]["a"] == 1
    assert page({"a": 1})["properties"]["a"] == 1 and "name" not in page({"a": 1})
    assert page("", {})["properties"]["name"] == ""
    with_callback = page("Cat", "Home", {"a": 1}, None)
    assert (with_callback["category"], with_callback["name"]) == ("Cat", "Home")
    track = expand(compact("k", "track", [{"event": "Obj", "properties": {"b": 2}}]), FACTS)
    assert track["event"] == "Obj" and track["properties"] == {"b": 2}


def test_every_malformed_messageid_or_userid_of_the_current_form_is_a_400():
    """Checked in expand() itself (the in-process test above sees only the status)."""
    good = current("k", "track", ["Ok"])
    for message_id in ("", "sb-", "sb-x-1", "sb--1", "sb-9999999999999999-x", "sb-\u0661\u0662-x", "1-sb-2-x"):
        with pytest.raises(ApiError) as refused:
            expand([*good[:4], message_id, *good[5:]], FACTS)
        assert (refused.value.status, refused.value.code) == (400, "invalid_early_event"), message_id
    for user_id in (5, [], {}, False):
        with pytest.raises(ApiError):
            expand([*good[:3], {**BPC, "i": user_id}, *good[4:]], FACTS)


def test_the_current_form_takes_the_time_from_the_messageid_and_no_userid_as_the_bundle():
    """The bundle rebuilds the call with {messageId: bpc.e, timestamp: its time, userId: bpc.i}
    and its event's userId is userId() || opts.userId || null: an empty or absent one is null."""
    body = current("k", "track", ["Ok"], ids={"messageId": "sb-1767225600999-u", "timestamp": 0, "userId": "u-1"})
    event = expand(body, FACTS)
    assert event["timestamp"] == "2026-01-01T00:00:00.999Z" and event["messageId"] == "sb-1767225600999-u"
    assert event["userId"] == "u-1"
    for bpc in ({**BPC, "i": ""}, {**BPC, "i": None}, BPC):
        assert expand([*body[:3], bpc, *body[4:]], FACTS)["userId"] is None

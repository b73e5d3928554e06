"""Mixpanel translator: /import with Basic auth, /track, /engage and /groups, against a local server."""

from __future__ import annotations

import base64

import orjson
import pytest

from delivery_vendor import Vendor, make_event, send
from server.destinations.mixpanel import cloud

TOKEN = "0123456789abcdef0123456789abcdef"
SETTINGS = {"token": TOKEN, "api_secret": "mp-api-secret", "region": "us", "people": True}
TIME_MS = 1772600767123


def deliver(event, settings=SETTINGS, host="api.mixpanel.com"):
    with Vendor() as mixpanel:
        outcome = send(cloud.translate(event, settings), {host: mixpanel.url})
        assert outcome.outcome == "delivered"
        return mixpanel.snapshot()


def test_track_goes_to_import_with_basic_auth_and_insert_id():
    event = make_event("track", messageId="ajs-0001", userId="u-1", event="Order Completed",
                       properties={"total": 10}, context={"ip": "1.2.3.4", "page": {"url": "https://x.test/p"},
                                                          "campaign": {"source": "news", "name": "spring"}})
    [got] = deliver(event)
    assert (got.method, got.path, got.query) == ("POST", "/import", {"strict": "1"})
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"mp-api-secret:").decode()
    assert got.headers["content-type"] == "application/json"
    assert got.json() == [{"event": "Order Completed", "properties": {
        "time": TIME_MS, "distinct_id": "u-1", "$insert_id": "ajs-0001", "$device_id": "anon-12345",
        "$user_id": "u-1", "$current_url": "https://x.test/p", "ip": "1.2.3.4", "utm_source": "news",
        "utm_campaign": "spring", "total": 10}}]


def test_a_long_message_id_becomes_a_stable_insert_id_mixpanel_accepts():
    event = make_event("track", messageId="ajs-next-1700000000000-0b6f8a5e-2c1d-4e7f-9a3b-123456789abc", event="X")
    [first] = deliver(event)
    [again] = deliver(event)
    insert_id = first.json()[0]["properties"]["$insert_id"]
    assert len(insert_id) == 32 and insert_id == again.json()[0]["properties"]["$insert_id"]


@pytest.mark.parametrize("kind, name, expected", [
    ("page", "Pricing", "Viewed Pricing"), ("screen", "Home", "Viewed Home"), ("page", None, "Loaded a Page"),
])
def test_page_and_screen_are_viewed_events(kind, name, expected):
    [got] = deliver(make_event(kind, name=name, properties={"path": "/pricing"}))
    assert got.path == "/import"
    [event] = got.json()
    assert event["event"] == expected and event["properties"]["distinct_id"] == "anon-12345"


def test_identify_joins_ids_with_track_then_sets_the_profile_with_engage():
    event = make_event("identify", messageId="m-7", userId="u-1", traits={"email": "a@b.test", "firstName": "Ada",
                                                                            "plan": "pro"})
    identify, engage = deliver(event)
    assert (identify.method, identify.path) == ("POST", "/track")
    assert identify.headers["content-type"] == "application/x-www-form-urlencoded"
    assert orjson.loads(identify.form()["data"]) == [{"event": "$identify", "properties": {
        "token": TOKEN, "distinct_id": "u-1", "$identified_id": "u-1", "$anon_id": "anon-12345",
        "$insert_id": "m-7", "time": TIME_MS}}]
    assert engage.path == "/engage"
    assert orjson.loads(engage.form()["data"]) == [{
        "$token": TOKEN, "$distinct_id": "u-1", "$ip": "203.0.113.9",
        "$set": {"$email": "a@b.test", "$first_name": "Ada", "plan": "pro"}}]


def test_identify_without_people_sends_no_profile_update():
    sent = deliver(make_event("identify", userId="u-1", traits={"email": "a@b.test"}), {**SETTINGS, "people": False})
    assert [r.path for r in sent] == ["/track"]


def test_group_sets_group_profile_and_alias_creates_an_alias():
    [group] = deliver(make_event("group", groupId="acme", traits={"name": "Acme", "employees": 50}))
    assert group.path == "/groups"
    assert orjson.loads(group.form()["data"]) == [{"$token": TOKEN, "$group_key": "company", "$group_id": "acme",
                                                   "$set": {"name": "Acme", "employees": 50}}]
    [alias] = deliver(make_event("alias", messageId="m-9", userId="u-1", previousId="anon-12345"))
    assert alias.path == "/track"
    assert orjson.loads(alias.form()["data"]) == [{"event": "$create_alias", "properties": {
        "token": TOKEN, "distinct_id": "anon-12345", "alias": "u-1", "$insert_id": "m-9"}}]


def test_eu_region_uses_the_eu_host():
    [got] = deliver(make_event("track", event="X"), {**SETTINGS, "region": "eu"}, host="api-eu.mixpanel.com")
    assert got.path == "/import"

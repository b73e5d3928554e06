"""Amplitude translator: HTTP V2, /identify, /groupidentify and /usermap, against a local server."""

from __future__ import annotations

import orjson
import pytest

from delivery_vendor import Vendor, make_event, send
from server.destinations.amplitude import cloud

KEY = "abcdef0123456789abcdef0123456789"
SETTINGS = {"api_key": KEY, "secret_key": "amp-secret", "region": "us"}
TIME_MS = 1772600767123


def deliver(event, settings=SETTINGS, host="api2.amplitude.com"):
    with Vendor() as amplitude:
        outcome = send(cloud.translate(event, settings), {host: amplitude.url})
        assert outcome.outcome == "delivered"
        return amplitude.snapshot()


def test_track_goes_to_httpapi_with_insert_id():
    event = make_event("track", messageId="m-1", userId="user-1", event="Song Played", properties={"len": 200},
                       context={"ip": "1.2.3.4", "traits": {"plan": "pro"}})
    [got] = deliver(event)
    assert (got.method, got.path) == ("POST", "/2/httpapi")
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"api_key": KEY, "options": {"min_id_length": 1}, "events": [{
        "user_id": "user-1", "device_id": "anon-12345", "event_type": "Song Played", "time": TIME_MS,
        "event_properties": {"len": 200}, "insert_id": "m-1", "library": "switchboard", "ip": "1.2.3.4",
        "user_properties": {"$set": {"plan": "pro"}}}]}


def test_device_id_prefers_the_context_device_id():
    [got] = deliver(make_event("track", event="X", context={"device": {"id": "dev-777"}}))
    assert got.json()["events"][0]["device_id"] == "dev-777"


@pytest.mark.parametrize("kind, name, expected", [("page", "Home", "Viewed Home"), ("screen", None, "Loaded a Screen")])
def test_page_and_screen_are_viewed_events(kind, name, expected):
    [got] = deliver(make_event(kind, name=name))
    assert got.path == "/2/httpapi" and got.json()["events"][0]["event_type"] == expected


def test_identify_posts_user_properties_as_a_form():
    [got] = deliver(make_event("identify", userId="user-1", traits={"email": "a@b.test", "plan": "pro"}))
    assert (got.method, got.path) == ("POST", "/identify")
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"
    form = got.form()
    assert form["api_key"] == KEY
    assert orjson.loads(form["identification"]) == [{"user_id": "user-1", "device_id": "anon-12345",
                                                     "user_properties": {"$set": {"email": "a@b.test", "plan": "pro"}}}]


def test_group_sets_group_properties_and_the_users_group():
    groupidentify, identify = deliver(make_event("group", userId="user-1", groupId="acme", traits={"name": "Acme"}))
    assert groupidentify.path == "/groupidentify"
    assert orjson.loads(groupidentify.form()["identification"]) == [{
        "group_type": "company", "group_value": "acme", "group_properties": {"$set": {"name": "Acme"}}}]
    assert identify.path == "/identify"
    assert orjson.loads(identify.form()["identification"]) == [{
        "user_id": "user-1", "device_id": "anon-12345", "groups": {"company": "acme"}}]


def test_alias_maps_the_previous_id_to_the_user():
    [got] = deliver(make_event("alias", userId="user-1", previousId="old-id-9"))
    assert got.path == "/usermap"
    assert orjson.loads(got.form()["mapping"]) == [{"user_id": "old-id-9", "global_user_id": "user-1"}]


def test_eu_region_uses_the_eu_host():
    [got] = deliver(make_event("track", event="X"), {**SETTINGS, "region": "eu"}, host="api.eu.amplitude.com")
    assert got.path == "/2/httpapi"

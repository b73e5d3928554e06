"""Customer.io translator: Track API v2 entity calls with Basic site_id:api_key, against a local server."""

from __future__ import annotations

import base64

import pytest

from delivery_vendor import Vendor, make_event, send
from server.destinations.customerio import cloud

SETTINGS = {"site_id": "site-42", "api_key": "cio-key-xyz", "region": "us"}
WHEN = 1772600767


def deliver(event, settings=SETTINGS, host="track.customer.io"):
    with Vendor() as cio:
        outcome = send(cloud.translate(event, settings), {host: cio.url})
        assert outcome.outcome == "delivered"
        [got] = cio.snapshot()
    assert (got.method, got.path) == ("POST", "/api/v2/entity")
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"site-42:cio-key-xyz").decode()
    assert got.headers["content-type"] == "application/json"
    return got.json()


def test_identify_is_a_person_identify_with_unix_dates():
    body = deliver(make_event("identify", userId="u-1", traits={"email": "a@b.test",
                                                                "createdAt": "2026-01-01T00:00:00Z"}))
    assert body == {"type": "person", "action": "identify", "identifiers": {"id": "u-1"},
                    "attributes": {"email": "a@b.test", "createdAt": 1767225600}, "timestamp": WHEN}


@pytest.mark.parametrize("fields, identifiers", [
    ({"userId": "cio_abc"}, {"cio_id": "abc"}),
    ({"userId": "ada@example.test"}, {"email": "ada@example.test"}),
    ({"context": {"traits": {"email": "t@x.test"}}}, {"email": "t@x.test"}),
    ({"context": {}}, {"anonymous_id": "anon-12345"}),
])
def test_identifier_choice(fields, identifiers):
    body = deliver(make_event("track", event="E", **fields))
    assert body["identifiers"] == identifiers


def test_track_page_and_screen_carry_the_message_id():
    body = deliver(make_event("track", messageId="m-1", userId="u-1", event="Order Completed", properties={"total": 5}))
    assert body == {"type": "person", "action": "event", "identifiers": {"id": "u-1"}, "name": "Order Completed",
                    "id": "m-1", "attributes": {"total": 5}, "timestamp": WHEN}
    body = deliver(make_event("page", messageId="m-2", userId="u-1", properties={"url": "https://x.test/a"}))
    assert (body["action"], body["name"], body["id"]) == ("page", "https://x.test/a", "m-2")
    body = deliver(make_event("screen", messageId="m-3", userId="u-1", name="Home"))
    assert (body["action"], body["name"], body["id"]) == ("screen", "Home", "m-3")


def test_group_is_an_object_related_to_the_user_and_alias_merges():
    body = deliver(make_event("group", userId="u-1", groupId="acme", traits={"name": "Acme"}))
    assert body == {"type": "object", "action": "identify",
                    "identifiers": {"object_type_id": "1", "object_id": "acme"}, "attributes": {"name": "Acme"},
                    "cio_relationships": [{"identifiers": {"id": "u-1"}}], "timestamp": WHEN}
    body = deliver(make_event("alias", userId="u-1", previousId="old-1"))
    assert body == {"type": "person", "action": "merge", "primary": {"id": "u-1"}, "secondary": {"id": "old-1"},
                    "timestamp": WHEN}


def test_eu_region_uses_the_eu_host():
    assert deliver(make_event("track", event="E", userId="u"), {**SETTINGS, "region": "eu"},
                   host="track-eu.customer.io")["action"] == "event"

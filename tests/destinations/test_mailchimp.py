"""Mailchimp translator against a local server that keeps an audience like Mailchimp does."""

from __future__ import annotations

import base64
import hashlib

import orjson

from delivery_vendor import Vendor, make_event, send
from server.destinations.mailchimp import cloud

SETTINGS = {"api_key": "0123456789abcdef0123456789abcdef-us6", "list_id": "a1b2c3", "double_opt_in": False}


class FakeAudience:
    """PUT …/members/{hash}: creates with status_if_new, or updates without touching status unless
    the body has "status" (Mailchimp's semantics)."""

    def __init__(self, members=None):
        self.members = dict(members or {})

    def __call__(self, r):
        body = r.json()
        key = r.path.rsplit("/", 1)[-1]
        member = self.members.get(key)
        if member is None:
            member = {"email_address": body["email_address"], "status": body["status_if_new"], "merge_fields": {}}
            self.members[key] = member
        if "status" in body:
            member["status"] = body["status"]
        member["merge_fields"].update(body.get("merge_fields", {}))
        return 200, {"Content-Type": "application/json"}, orjson.dumps(member)


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def deliver(audience, event, settings=SETTINGS):
    with Vendor(audience) as mailchimp:
        outcome = send(cloud.translate(event, settings), {"us6.api.mailchimp.com": mailchimp.url})
        assert outcome.outcome == "delivered"
        [got] = mailchimp.snapshot()
    return got


def test_identify_upserts_the_member_with_merge_fields():
    audience = FakeAudience()
    event = make_event("identify", userId="u-1", traits={"email": "Ada@Example.test", "firstName": "Ada",
                                                         "lastName": "Lovelace", "favorite_color": "green",
                                                         "vip": True, "nickname": None, "address": {"city": "x"}})
    got = deliver(audience, event)
    assert (got.method, got.path) == ("PUT", f"/3.0/lists/a1b2c3/members/{md5('ada@example.test')}")
    assert got.headers["authorization"] == "Basic " + base64.b64encode(
        b"switchboard:0123456789abcdef0123456789abcdef-us6").decode()
    assert got.json() == {"email_address": "Ada@Example.test", "status_if_new": "subscribed", "merge_fields": {
        "FNAME": "Ada", "LNAME": "Lovelace", "FAVORITECO": "green", "VIP": "true", "NICKNAME": ""}}
    assert audience.members[md5("ada@example.test")]["status"] == "subscribed"


def test_double_opt_in_makes_new_members_pending():
    got = deliver(FakeAudience(), make_event("identify", traits={"email": "n@x.test"}),
                  {**SETTINGS, "double_opt_in": True})
    assert got.json()["status_if_new"] == "pending"


def test_an_unsubscribed_member_is_never_resubscribed():
    key = md5("gone@x.test")
    audience = FakeAudience({key: {"email_address": "gone@x.test", "status": "unsubscribed", "merge_fields": {}}})
    got = deliver(audience, make_event("identify", traits={"email": "gone@x.test", "firstName": "G"}))
    assert "status" not in got.json()
    assert audience.members[key]["status"] == "unsubscribed"
    assert audience.members[key]["merge_fields"] == {"FNAME": "G"}


def test_only_identify_with_an_email_is_sent():
    assert cloud.translate(make_event("identify", userId="u"), SETTINGS) == []
    assert cloud.translate(make_event("track", event="E", context={"traits": {"email": "a@b.test"}}), SETTINGS) == []

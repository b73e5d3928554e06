"""Intercom translator against a local server that keeps contacts and companies like Intercom does."""

from __future__ import annotations

import itertools

import orjson

from delivery_vendor import Vendor, make_event, send
from server.destinations.intercom import cloud

SETTINGS = {"app_id": "abc12345", "access_token": "ic-token-123", "region": "us"}


class FakeIntercom:
    """Just enough of Intercom: contact search by external_id/email, create (409 on a duplicate),
    update, companies, attaching a company to a contact."""

    def __init__(self):
        self.contacts: dict[str, dict] = {}
        self.companies: dict[str, dict] = {}
        self.attached: list[tuple[str, str]] = []
        self.ids = itertools.count(1)

    def __call__(self, r):
        body = r.json() if r.body else {}
        if r.headers.get("authorization") != "Bearer ic-token-123":
            return 401, {}, b'{"type":"error.list"}'
        if r.path == "/contacts/search":
            q = body["query"]
            found = [c for c in self.contacts.values() if c.get(q["field"]) == q["value"]]
            return 200, {"Content-Type": "application/json"}, orjson.dumps({"data": found})
        if r.method == "POST" and r.path == "/contacts":
            if any(c.get("external_id") == body.get("external_id") for c in self.contacts.values()):
                return 409, {}, b'{"errors":[{"code":"conflict"}]}'
            contact = {**body, "id": f"c{next(self.ids)}"}
            self.contacts[contact["id"]] = contact
            return 200, {}, orjson.dumps(contact)
        if r.method == "PUT" and r.path.startswith("/contacts/"):
            contact = self.contacts[r.path.split("/")[2]]
            contact.update(body)
            return 200, {}, orjson.dumps(contact)
        if r.path == "/companies":
            company = self.companies.setdefault(body["company_id"], {"id": f"co{next(self.ids)}"})
            company.update(body)
            return 200, {}, orjson.dumps(company)
        if r.path.endswith("/companies"):
            self.attached.append((r.path.split("/")[2], body["id"]))
            return 200, {}, b"{}"
        if r.path == "/events":
            return 202, {}, b""
        return 404, {}, b"{}"


def deliver(fake, event, settings=SETTINGS, host="api.intercom.io"):
    with Vendor(fake) as intercom:
        outcome = send(cloud.translate(event, settings), {host: intercom.url})
        assert outcome.outcome == "delivered", outcome.last
        sent = intercom.snapshot()
    for r in sent:
        assert r.headers["authorization"] == "Bearer ic-token-123"
        assert r.headers["intercom-version"] == "2.11" and r.headers["accept"] == "application/json"
    return sent


def test_identify_creates_the_contact_then_updates_it_instead_of_conflicting():
    fake = FakeIntercom()
    event = make_event("identify", userId="u-1", traits={"email": "a@b.test", "firstName": "Ada", "lastName": "L",
                                                         "createdAt": "2026-01-01T00:00:00Z", "plan": "pro"})
    search, create = deliver(fake, event)
    assert (search.method, search.path) == ("POST", "/contacts/search")
    assert search.json() == {"query": {"field": "external_id", "operator": "=", "value": "u-1"}}
    assert (create.method, create.path) == ("POST", "/contacts")
    assert create.json() == {"role": "user", "external_id": "u-1", "email": "a@b.test", "name": "Ada L",
                             "signed_up_at": 1767225600, "custom_attributes": {"plan": "pro"}}
    again = make_event("identify", userId="u-1", traits={"email": "new@b.test"})
    search, update = deliver(fake, again)
    assert (update.method, update.path) == ("PUT", "/contacts/c1")
    assert fake.contacts["c1"]["email"] == "new@b.test" and len(fake.contacts) == 1


def test_track_is_an_event_with_flat_metadata_and_price_in_cents():
    [got] = deliver(FakeIntercom(), make_event("track", userId="u-1", event="Order Completed",
                                               properties={"revenue": 12.34, "currency": "EUR", "order_id": "o1",
                                                           "products": [{"id": 1}]}))
    assert (got.method, got.path) == ("POST", "/events")
    assert got.json() == {"event_name": "Order Completed", "created_at": 1772600767, "user_id": "u-1",
                          "metadata": {"order_id": "o1", "price": {"amount": 1234, "currency": "EUR"}}}


def test_group_upserts_the_company_and_attaches_the_user():
    fake = FakeIntercom()
    deliver(fake, make_event("identify", userId="u-1", traits={"email": "a@b.test"}))
    sent = deliver(fake, make_event("group", userId="u-1", groupId="acme",
                                    traits={"name": "Acme", "plan": "gold", "employees": 40}))
    assert [(r.method, r.path) for r in sent] == [
        ("POST", "/companies"), ("POST", "/contacts/search"), ("POST", "/contacts/c1/companies")]
    assert sent[0].json() == {"company_id": "acme", "name": "Acme", "plan": "gold", "size": 40}
    assert fake.attached == [("c1", fake.companies["acme"]["id"])]


def test_page_screen_alias_and_anonymous_tracks_are_not_sent():
    for event in (make_event("page"), make_event("screen"), make_event("alias", userId="u", previousId="p"),
                  make_event("track", event="E")):
        assert cloud.translate(event, SETTINGS) == []


def test_eu_region_uses_the_eu_host():
    [got] = deliver(FakeIntercom(), make_event("track", userId="u", event="E"), {**SETTINGS, "region": "eu"},
                    host="api.eu.intercom.io")
    assert got.path == "/events"

"""Slack translator: incoming-webhook messages from sandboxed Jinja2 templates, against a local server."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError

from delivery_vendor import Vendor, make_event, send
from server.destinations.slack import cloud

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"


def deliver(event, **settings):
    with Vendor() as slack:
        requests = cloud.translate(event, {"webhook_url": HOOK, **settings})
        outcome = send(requests, {"hooks.slack.com": slack.url})
        assert outcome.outcome == "delivered"
        return slack.snapshot(), outcome


def test_default_template_names_the_person_and_the_event():
    [got], outcome = deliver(make_event("track", userId="u-1", event="Signed Up",
                                        context={"traits": {"firstName": "Ada", "lastName": "Lovelace"}}))
    assert (got.method, got.path) == ("POST", "/services/T000/B000/XXXXSECRET")
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"text": "Ada Lovelace did Signed Up."}
    assert "XXXXSECRET" not in outcome.attempts[0].request["url"]  # the URL is the credential


@pytest.mark.parametrize("event_fields, name", [
    ({"userId": "u-1", "context": {"traits": {"name": "Grace"}}}, "Grace"),
    ({"userId": "u-1", "context": {"traits": {"username": "gh"}}}, "gh"),
    ({"userId": "u-1", "context": {"traits": {"email": "g@h.test"}}}, "g@h.test"),
    ({"userId": "u-1", "context": {}}, "User u-1"),
    ({"context": {}}, "Anonymous user anon-12345"),
])
def test_name_falls_back_like_segment(event_fields, name):
    [got], _ = deliver(make_event("track", event="Paid", **event_fields))
    assert got.json()["text"] == f"{name} did Paid."


def test_per_event_templates_channel_username_and_icon():
    templates = {"Order Completed": "{{name}} ordered {{properties.total}} {{properties.currency}}!",
                 "identify": "New person: {{traits.email}}"}
    [got], _ = deliver(make_event("track", userId="u-1", event="Order Completed",
                                  properties={"total": 99, "currency": "EUR"}),
                       templates=templates, channel="#sales", username="Shop", icon=":tada:")
    assert got.json() == {"text": "User u-1 ordered 99 EUR!", "channel": "#sales", "username": "Shop",
                          "icon_emoji": ":tada:"}
    [got], _ = deliver(make_event("identify", traits={"email": "x@y.test"}), templates=templates,
                       icon="https://x.test/i.png")
    assert got.json() == {"text": "New person: x@y.test", "icon_url": "https://x.test/i.png"}


def test_with_templates_only_named_events_post_and_identify_needs_a_template():
    assert cloud.translate(make_event("track", event="Other"), {"webhook_url": HOOK, "templates": {"X": "x"}}) == []
    assert cloud.translate(make_event("identify", userId="u"), {"webhook_url": HOOK}) == []


def test_values_are_escaped_so_an_event_cannot_ping_the_channel():
    [got], _ = deliver(make_event("track", event="<!channel> & co", userId="u"))
    assert got.json()["text"] == "User u did &lt;!channel&gt; &amp; co."


def test_templates_run_sandboxed():
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(SecurityError):
        cloud.translate(make_event("track", event="E"), {"webhook_url": HOOK, "templates": {"E": evil}})

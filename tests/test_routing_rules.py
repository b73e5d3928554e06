"""Device-mode filters as Segment's tsub routing rules in the settings document
(server/cdn/routing_rules.py, docs/filters.md "analytics-next"): the translation table, what is
refused, and what the settings document carries. e2e/test_routing_rules_tsub.py runs the rules
with analytics-next's own tsub in Chromium against server/fql.py and server/rules.py."""

from __future__ import annotations

import json

import pytest
from fql_cases import CASES
from starlette.testclient import TestClient

from server.app import create_app
from server.cdn.routing_rules import Untranslatable, condition_ir, routing_rules
from server.config import Config
from server.fql import parse
from server.rules import check_filters
from server.store import open_store, tokens, workspace

PROPS = ["and", ["=", ["typeof", "properties"], {"value": "object"}],
         ["!", ["=", ["length", "properties"], ["length", "properties"]]]]

# (condition, tsub IR): what each construct becomes
TRANSLATED = [
    ('event = "Signed Up"', ["=", "event", {"value": "Signed Up"}]),
    ('"track" = type', ["=", "type", {"value": "track"}]),
    ("properties.total > 10", ["and", PROPS, [">", "properties.total", {"value": 10}]]),
    ('properties.total > "10"', {"value": False}),  # numbers only
    ("userId = null", ["or", ["=", "userId", {"value": None}], ["=", ["typeof", "userId"], {"value": "undefined"}]]),
    ("properties.x != null", ["and", PROPS, ["!", ["or", ["=", "properties.x", {"value": None}],
                                                    ["=", ["typeof", "properties.x"], {"value": "undefined"}]]]]),
    ("properties.x != 3", ["or", ["!", ["and", PROPS]], ["!=", "properties.x", {"value": 3}]]),
    ("exists(userId)", ["and", ["!", ["=", ["typeof", "userId"], {"value": "undefined"}]], ["!=", "userId", {"value": None}]]),
    ("userId", ["and", ["!", ["=", ["typeof", "userId"], {"value": "undefined"}]], ["!=", "userId", {"value": None}],
                ["!=", "userId", {"value": False}], ["!=", "userId", {"value": 0}], ["!=", "userId", {"value": ""}]]),
    ('match(event, "[Beta] *")', ["match", "event", {"value": "\\[Beta\\] *"}]),
    ('contains("checkout,cart", event)', ["contains", {"value": "checkout,cart"}, "event"]),
    ('contains(3, event)', {"value": False}),
    ('!(type = "page") and true', ["and", ["!", ["=", "type", {"value": "page"}]], {"value": True}]),
    ("1 = 1.0 or false", ["or", {"value": True}, {"value": False}]),
]

# (condition, words of the reason it is refused)
REFUSED = [
    ('contains(properties.tags, "vip")', "contains() on a field"),
    ('match(event, "Sign?Up")', "'?' in a match() pattern"),
    ("properties.a = properties.b", "between two fields"),
    ("exists(properties.toString)", "every JavaScript object has"),
    ("properties.`a.b` = 1", "holds a dot"),
    ("properties.x = 1e400", "too large"),
]


@pytest.mark.parametrize(("condition", "ir"), TRANSLATED, ids=[c for c, _ in TRANSLATED])
def test_each_construct_becomes_the_tsub_ir_with_our_meaning(condition, ir):
    assert condition_ir(parse(condition)) == ir


@pytest.mark.parametrize(("condition", "reason"), REFUSED, ids=[c for c, _ in REFUSED])
def test_constructs_tsub_cannot_run_with_our_meaning_are_refused(condition, reason):
    with pytest.raises(Untranslatable, match=reason.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        condition_ir(parse(condition))


def test_every_shared_fql_case_translates_or_is_refused_for_a_stated_reason():
    refused = {}
    for condition, _ in CASES:
        try:
            json.dumps(condition_ir(parse(condition)), allow_nan=False)
        except Untranslatable as exc:
            refused[condition] = str(exc)
    assert set(refused) == {'!contains(context.library.name, "js")', 'match(event, "Button ?licked")',
                            'contains(properties.features, "dark-mode")', 'contains(properties.features, "blink")',
                            'contains(traits.email, "@")'}


def rules(filters):
    return routing_rules("Meta Pixel", check_filters(filters))


def test_each_action_becomes_a_rule_in_order():
    out = rules([
        {"if": 'event = "A"', "action": "drop"},
        {"if": 'type = "track"', "action": "only"},
        {"if": "true", "action": "sample", "percent": 100},   # sends everything: no rule
        {"if": 'event = "B"', "action": "sample", "percent": 0},
        {"if": "true", "action": "drop_properties", "fields": ["properties.email"]},
        {"if": "true", "action": "allow_properties", "fields": ["traits.plan", "traits.email"]},
    ])
    assert [r["matchers"][0]["config"]["expr"] for r in out] == ['event = "A"', 'type = "track"', 'event = "B"', "true", "true"]
    assert all(r["destinationName"] == "Meta Pixel" and r["scope"] == "destinations" for r in out)
    assert [json.loads(m["ir"]) for r in out[:3] for m in r["matchers"]] == [
        ["=", "event", {"value": "A"}], ["!", ["=", "type", {"value": "track"}]], ["=", "event", {"value": "B"}]]
    assert [r["transformers"] for r in out[:3]] == [[[{"type": "drop"}]]] * 3
    assert out[3]["transformers"] == [[{"type": "drop_properties", "config": {"drop": {"properties": ["email"]}}}]]
    assert json.loads(out[3]["matchers"][0]["ir"]) == ["and", {"value": True}, PROPS]  # properties must be an object
    assert out[4]["transformers"] == [[{"type": "allow_properties", "config": {"allow": {"traits": ["plan", "email"]}}}]]


def test_a_change_to_several_objects_runs_the_one_the_condition_reads_last():
    [rule] = rules([{"if": "exists(traits.email)", "action": "drop_properties",
                     "fields": ["traits.email", "properties.user.email", "context.ip"]}])
    drops = [t[0]["config"]["drop"] for t in rule["transformers"]]
    assert drops == [{"properties.user": ["email"]}, {"context": ["ip"]}, {"traits": ["email"]}]
    assert len(rule["matchers"]) == 3


@pytest.mark.parametrize(("item", "reason"), [
    ({"if": "true", "action": "sample", "percent": 50}, "sample between 0 and 100"),
    ({"if": "true", "action": "allow_properties", "fields": ["properties.user.email"]}, "nested path"),
    ({"if": "exists(traits.email) or exists(context.ip)", "action": "drop_properties",
      "fields": ["traits.email", "context.ip"]}, "more than one of the objects"),
    ({"if": "true", "action": "drop_properties", "fields": ["properties.__proto__"]}, "every JavaScript object has"),
])
def test_actions_tsub_cannot_run_with_our_meaning_are_refused(item, reason):
    with pytest.raises(Untranslatable, match=f"filter 2 .*{reason}"):
        rules([{"if": "true", "action": "drop"}, item])


@pytest.fixture
def site(tmp_path):
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    engine = open_store(url)
    app = create_app(Config(database_url=url, delivery_workers=False), engine=engine,
                     planes=["server.health", "server.admin", "server.cdn"])
    source = workspace.create_source(engine, "Shop")
    token = tokens.create_token(engine, "test")
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, source, engine
    engine.dispose()


def test_the_settings_document_carries_device_mode_filters_as_routing_rules_and_no_cloud_filter(site):
    client, source, engine = site
    add = workspace.add_destination
    pixel = add(engine, source["id"], slug="meta_pixel", mode="device", enabled=True, settings={"pixel_id": "1"})
    mixpanel = add(engine, source["id"], slug="mixpanel", mode="device", enabled=True, settings={"token": "0" * 32})
    hook = add(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
               settings={"url": "https://example.com/hook", "shared_secret": "hush"})
    url = f"/v1/projects/{source['write_key']}/settings"
    assert client.get(url).json()["middlewareSettings"] == {}  # no filters: analytics-next loads no tsub
    put = lambda d, fs: client.put(f"/api/v1/destinations/{d['id']}/filters", json={"filters": fs})  # noqa: E731
    assert put(pixel, [{"if": 'event = "Secret"', "action": "drop"}, {"if": 'type = "track"', "action": "only"}]).status_code == 200
    assert put(mixpanel, [{"if": 'contains(properties.tags, "vip")', "action": "drop"}]).status_code == 200
    assert put(hook, [{"if": 'event = "CloudOnlySecretName"', "action": "drop"}]).status_code == 200

    doc = client.get(url).json()
    [drop, only] = doc["middlewareSettings"]["routingRules"]
    assert drop["destinationName"] == only["destinationName"] == "Meta Pixel"
    assert json.loads(drop["matchers"][0]["ir"]) == ["=", "event", {"value": "Secret"}]
    assert json.loads(only["matchers"][0]["ir"]) == ["!", ["=", "type", {"value": "track"}]]
    plugins = {p["creationName"]: p["settings"]["__switchboard"] for p in doc["remotePlugins"]}
    # Mixpanel's filter has no exact tsub form: our plugin file gets the list and applies it itself.
    assert "filters" not in plugins["Meta Pixel"]
    assert plugins["Mixpanel"]["filters"] == [{"if": ["contains", ["path", ["properties", "tags"]], ["lit", "vip"]],
                                              "action": "drop"}]
    assert "CloudOnlySecretName" not in client.get(url).text

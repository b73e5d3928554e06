"""FQL subset (server/fql.py): a table of conditions parsed and evaluated, parse errors with
their positions, and the filter actions (server/rules.py) on events."""

from __future__ import annotations

import pytest

from fql_cases import CASES, ERRORS, EVENT
from server import fql
from server.rules import FilterError, apply_filters, check_filters, sample_bucket


@pytest.mark.parametrize("condition, expected", CASES, ids=[c for c, _ in CASES])
def test_conditions_evaluate_as_documented(condition, expected):
    assert fql.evaluate(condition, EVENT) is expected


@pytest.mark.parametrize("condition, position", ERRORS, ids=[c or "(empty)" for c, _ in ERRORS])
def test_parse_errors_name_their_position(condition, position):
    with pytest.raises(fql.FqlError) as caught:
        fql.parse(condition)
    assert caught.value.position == position, caught.value.message


def test_deep_nesting_is_a_parse_error_not_a_crash():
    with pytest.raises(fql.FqlError) as caught:
        fql.parse("(" * 900 + "true" + ")" * 900)
    assert caught.value.position == 50
    with pytest.raises(fql.FqlError):
        fql.parse("!" * 1999 + "x")
    assert fql.evaluate("(" * 25 + "!" * 24 + "true" + ")" * 25, {}) is True


def test_a_condition_compiles_once_and_never_through_eval(monkeypatch):
    import builtins

    monkeypatch.setattr(builtins, "eval", lambda *a: pytest.fail("eval called"))
    fql.compile_condition.cache_clear()
    for _ in range(3):
        fql.evaluate('properties.count > 2 and match(event, "B*")', EVENT)
    assert fql.compile_condition.cache_info().misses == 1


def test_the_ast_is_plain_json_for_the_browser():
    import json

    tree = fql.parse('exists(traits.email) and !(properties.price < 5 or contains(event, "x"))')
    assert json.loads(json.dumps(tree)) == tree
    assert tree[0] == "and" and tree[1] == ["exists", ["path", ["traits", "email"]]]


def track(**properties):
    return {"type": "track", "event": "Order Completed", "messageId": "m-7", "properties": properties,
            "context": {"ip": "203.0.113.9", "page": {"path": "/"}}, "traits": {"email": "a@b.c", "plan": "pro"}}


def test_drop_and_only():
    filters = check_filters([{"if": "properties.total < 10", "action": "drop"}])
    assert apply_filters(track(total=5), filters)[0] is None
    sent, notes = apply_filters(track(total=50), filters)
    assert sent == track(total=50) and notes == []
    only = check_filters([{"if": 'event = "Signed Up"', "action": "only"}])
    event, notes = apply_filters(track(total=50), only)
    assert event is None and "only matching events" in notes[0]


def test_drop_and_allow_properties_change_a_copy():
    original = track(total=50, email="x@y.z", coupon="C1")
    drop = check_filters([{"if": "true", "action": "drop_properties", "fields": ["properties.email", "context.ip"]}])
    sent, notes = apply_filters(original, drop)
    assert sent["properties"] == {"total": 50, "coupon": "C1"} and "ip" not in sent["context"]
    assert original["properties"]["email"] == "x@y.z"  # the stored event is untouched
    assert "removed properties.email, context.ip" in notes[0]
    allow = check_filters([{"if": "true", "action": "allow_properties", "fields": ["properties.total", "traits.plan"]}])
    sent, _ = apply_filters(original, allow)
    assert sent["properties"] == {"total": 50} and sent["traits"] == {"plan": "pro"}
    assert sent["context"] == original["context"]  # a root not named is left alone


def test_filters_run_in_order_and_the_first_drop_ends_them():
    filters = check_filters([
        {"if": "true", "action": "drop_properties", "fields": ["properties.total"]},
        {"if": "exists(properties.total)", "action": "drop"},  # sees the event after filter 1
        {"if": "true", "action": "drop"},
    ])
    sent, notes = apply_filters(track(total=1), filters)
    assert sent is None and notes[-1].startswith("dropped by filter 3")


def test_sampling_is_deterministic_per_message_id():
    filters = check_filters([{"if": "true", "action": "sample", "percent": 30}])
    kept = [apply_filters({**track(), "messageId": f"id-{n}"}, filters)[0] is not None for n in range(2000)]
    assert kept == [apply_filters({**track(), "messageId": f"id-{n}"}, filters)[0] is not None for n in range(2000)]
    assert 0.25 < sum(kept) / len(kept) < 0.35
    assert sample_bucket("m-1") == sample_bucket("m-1") and 0 <= sample_bucket("é😀") < 10000


@pytest.mark.parametrize("bad, field, position", [
    ([{"if": "event = ", "action": "drop"}], "if", 8),
    ([{"if": "true", "action": "explode"}], "action", None),
    ([{"if": "true", "action": "drop_properties"}], "fields", None),
    ([{"if": "true", "action": "drop_properties", "fields": ["email"]}], "fields", None),
    ([{"if": "true", "action": "sample", "percent": 120}], "percent", None),
    ([{"if": "true", "action": "drop", "then": 1}], "then", None),
    ([{"if": 3, "action": "drop"}], "if", 0),
    ("drop", "filters", None),
])
def test_bad_filters_are_refused_with_the_field(bad, field, position):
    with pytest.raises(FilterError) as caught:
        check_filters(bad)
    assert caught.value.field == field and caught.value.position == position

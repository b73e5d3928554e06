"""server/ingest/depth.py: a body is parsed exactly as orjson parses it, refused when nested more
than 64 levels (the body object is level 1) — brackets inside strings are text — and no body,
however shaped, makes the check walk the parsed value in Python.

Over HTTP on a live server: tests/test_ingest_limits.py (deep events are a 400, not a 500)."""

from __future__ import annotations

import json
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import ApiError
from server.ingest.depth import MAX_DEPTH, ORJSON_MAX_DEPTH, deep_batch, loads, too_deep


def nested(levels: int, leaf: object = 1, shape: str = "mixed") -> object:
    """A value ``levels`` containers deep: lists, objects, or both in turn."""
    value = leaf
    for level in range(levels):
        as_list = shape == "list" or (shape == "mixed" and level % 2 == 0)
        value = [value] if as_list else {"k": value}
    return value


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def refused(data: bytes) -> bool:
    try:
        loads(data)
    except ApiError as exc:
        assert exc.status == 400 and exc.code == "invalid_event" and "64 levels" in exc.message
        return True
    return False


def nested_text(levels: int, opening: str, closing: str) -> bytes:
    return (opening * levels + "1" + closing * levels).encode()  # json.dumps would recurse too deep


def test_orjson_parses_exactly_as_deep_as_the_check_assumes():
    # The check puts orjson's own limit 64 levels into the body: it must be where we think.
    for opening, closing in (("[", "]"), ('{"k":', "}"), ('[{"k":', "}]")):
        levels = ORJSON_MAX_DEPTH // len(closing)
        orjson.loads(nested_text(levels, opening, closing))
        with pytest.raises(orjson.JSONDecodeError, match="depth limit exceeded"):
            orjson.loads(nested_text(levels, opening, closing).replace(b"1", b"[1]"))


@pytest.mark.parametrize("shape", ["list", "object", "mixed"])
@pytest.mark.parametrize("padding", [0, 10_000], ids=["small", "large"])
@pytest.mark.parametrize("noise", ["", "[" * 300, "]" * 300 + "{"], ids=["plain", "opening", "closing"])
def test_the_limit_is_exact_whatever_the_strings_hold(shape, padding, noise):
    # A string full of brackets (balanced or not) must neither count as nesting nor hide it.
    for levels, too_deep in ((MAX_DEPTH - 1, False), (MAX_DEPTH, True), (300, True)):
        body = {"writeKey": "k", "s": noise, "pad": ["x" * 10] * (padding // 13), "properties": nested(levels, shape=shape)}
        data = json.dumps(body).encode()
        assert depth_of(body) == levels + 1
        assert refused(data) is too_deep, (levels, len(data))
        if not too_deep:
            assert loads(data) == body


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(
    st.none() | st.integers() | st.text(alphabet="[]{}\",:\\ ax", max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text("[]{}ab", max_size=3), children, max_size=3),
    max_leaves=12), wrap=st.integers(0, 80), pad=st.booleans())
def test_any_value_is_parsed_as_orjson_parses_it_or_refused_when_too_deep(value, wrap, pad):
    value = nested(wrap, leaf=value)
    if pad:  # over the small-body path's 4 KB
        value = {"pad": "[" * 5000, "v": value}
    data = json.dumps(value).encode()
    if depth_of(value) > MAX_DEPTH:
        assert refused(data)
    else:
        assert loads(data) == orjson.loads(data)


@pytest.mark.parametrize("data", [
    b"1],[2", b"[1],[2]", b"]", b"[1]]", b'{"a":1}]', b"[[]", b"{} {}", b"[" * 60 + b"1" + b"]" * 59,
    b'{"s":"' + b"[" * 200 + b'"} x', b'{"s":"' + b"[" * 5000 + b'"}]', b'{"n":1e400,"s":"' + b"[" * 5000 + b'"}',
])
def test_a_body_that_is_not_json_gets_orjsons_own_error(data):
    # The check may parse the body inside 960 arrays: a stray "]" in the body could pair with
    # one of them, and orjson's positions would be shifted. The answer must be the plain parse's.
    # (A body both broken and nested over 64 levels before the break may get either answer.)
    with pytest.raises(orjson.JSONDecodeError) as plain:
        orjson.loads(data)
    with pytest.raises(orjson.JSONDecodeError) as ours:
        loads(data)
    assert str(ours.value) == str(plain.value)


def python_lines_run(work) -> int:
    """How many lines of Python ``work()`` executes (orjson and bytes methods are C: not counted)."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        count += 1
        return tracer

    sys.settrace(tracer)
    try:
        work()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("body", [
    # 100,000 empty arrays, and a string of "[" so that counting brackets cannot vouch for it.
    b'{"writeKey":"nope","batch":[],"s":"' + b"[" * 100 + b'","x":[' + b",".join([b"[]"] * 100_000) + b"]}",
    # An ordinary batch of 20,000 small events, one of whose strings holds a stray "[".
    b'{"writeKey":"k","batch":[' + b",".join([b'{"type":"track","properties":{"a":[1,{"b":2}]}}'] * 20_000)
    + b'],"context":{"page":{"title":"[draft"}}}',
], ids=["many-empty-arrays", "a-stray-bracket"])
def test_the_check_costs_no_python_work_per_container(body):
    # The walk of the parsed value this replaced ran a few lines per container: over 100,000
    # here (and ~1 s of event loop for 4 MB of them). Now: the unwrapping loop, whatever the body.
    assert not refused(body)
    assert python_lines_run(lambda: loads(body)) < 20_000


def item(levels: int, message_id: str) -> dict:
    """A track whose properties are ``levels`` containers deep: the item is one level more."""
    return {"type": "track", "userId": "u", "event": "E", "messageId": message_id, "properties": nested(levels)}


def test_a_batch_item_too_deep_is_named_exactly_and_anything_else_too_deep_refuses_the_body():
    # Level 3 of the body is the item: it may have MAX_DEPTH - 2 levels of its own.
    at_limit = {"batch": [item(MAX_DEPTH - 3, "a")]}
    assert depth_of(at_limit) == MAX_DEPTH and not refused(orjson.dumps(at_limit))
    assert not too_deep(at_limit["batch"][0], MAX_DEPTH - 2) and too_deep(item(MAX_DEPTH - 2, "b"), MAX_DEPTH - 2)
    over = {"batch": [item(MAX_DEPTH - 3, "a"), item(MAX_DEPTH - 2, "b"), item(300, "c"), item(1, "d")]}
    data = json.dumps(over).encode()  # orjson does not write 300 levels
    assert refused(data)
    body, deep = deep_batch(data)
    assert deep == {1, 2} and [i["messageId"] for i in body["batch"]] == ["a", "b", "c", "d"]
    # Too deep at the top (its own level 2 may hold MAX_DEPTH - 1), or past what orjson parses: all of it.
    assert deep_batch(json.dumps({"batch": [item(MAX_DEPTH - 2, "b")], "context": nested(MAX_DEPTH - 1)}).encode())[1] == {0}
    for whole in ({"batch": [item(1, "a")], "context": nested(MAX_DEPTH)},
                  {"batch": [item(1, "a")], "integrations": {"x": nested(MAX_DEPTH - 1)}}):
        data = json.dumps(whole).encode()
        assert refused(data)
        with pytest.raises(ApiError) as whole_body:
            deep_batch(data)
        assert whole_body.value.code == "invalid_event"
    with pytest.raises(orjson.JSONDecodeError):  # the collector answers it as too deep (server/ingest/body.py)
        deep_batch(b'{"batch":[' + nested_text(ORJSON_MAX_DEPTH + 10, "[", "]") + b"]}")

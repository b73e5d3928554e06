"""Device-mode destination filters as Segment's routing rules, for sites that run Segment's own
analytics-next against our settings document (docs/filters.md, "analytics-next").

analytics-next reads ``middlewareSettings.routingRules`` and, when there are some, loads its tsub
middleware and puts it in front of every remote plugin whose ``creationName`` is a rule's
``destinationName``. A rule is ``{matchers: [{type: "fql", ir}], transformers: [[...]]}``: for each
matcher, in order, on the event as the previous pairs left it, a match applies the transformers
(``drop``, ``drop_properties``, ``allow_properties``…). ``ir`` is tsub's FQL intermediate form, a JSON
text: ``["and", a, b]``, ``["!", a]``, ``["=", "properties.x", {"value": 1}]``, ``["typeof", p]``…

tsub's rules are not ours, so every node is translated to an expression that gives our answer
(server/fql.py, server/rules.py) on every JSON event, or the filter is refused with the reason:

- tsub walks a dotted path with ``obj[segment]`` through anything truthy (texts, lists, inherited
  members); ours walks own keys of objects only. Each path is guarded: every object on the way
  must be a plain object (``typeof`` is "object" and ``length`` is not a number), and where the
  guard fails the predicate takes the value ours gives a missing field. Segments holding a dot,
  or named like a member every JavaScript object inherits (``toString``, ``__proto__``…), are refused.
- A missing field equals ``null`` here; tsub sees ``undefined``: ``x = null`` becomes
  ``x = null or typeof(x) = "undefined"``. Truthiness and ``exists`` are spelled out the same way.
- ``match`` patterns are escaped for tsub's glob (``[``, ``]``, ``\\``); ``?`` is refused (tsub's
  is one UTF-16 unit, ours one character), and so are patterns holding lone surrogates.
- Refused: ``contains`` on a field (ours also finds an element of a list; tsub cannot look into
  lists); ``=``/``!=`` between two fields (objects compare differently); ``sample`` other than 0 or
  100 % (tsub samples by its own hash, not ours); ``allow_properties`` with a path deeper than
  ``root.key``; ``drop_properties``/``allow_properties`` whose condition reads fields of two or more
  of the objects the filter changes (tsub re-evaluates the condition after each change).
"""

from __future__ import annotations

import json
import math
from typing import Any

from server.fql import compile_condition, truthy

TARGET_TYPE = "workspace::project::destination::config"
# Every JavaScript object inherits these: obj[name] is there even when the event has no such key.
INHERITED = frozenset({
    "__proto__", "constructor", "prototype", "toString", "toLocaleString", "valueOf", "hasOwnProperty",
    "isPrototypeOf", "propertyIsEnumerable", "__defineGetter__", "__defineSetter__", "__lookupGetter__",
    "__lookupSetter__",
})
TRUE, FALSE = {"value": True}, {"value": False}


class Untranslatable(ValueError):
    """A filter tsub cannot run with our meaning; the message says which construct."""


def _const(value: bool) -> dict[str, bool]:
    return TRUE if value else FALSE


def _path(segments: list[str]) -> str:
    for segment in segments:
        if "." in segment:
            raise Untranslatable(f"the field name {segment!r} holds a dot")
        if segment in INHERITED:
            raise Untranslatable(f"the field name {segment!r} is a member every JavaScript object has")
    return ".".join(segments)


def _plain_object(path: str) -> list:
    """tsub IR for "the value at path is an object that is not a list" (null has length 0)."""
    return ["and", ["=", ["typeof", path], {"value": "object"}], ["!", ["=", ["length", path], ["length", path]]]]


def _guard(segments: list[str]) -> list[list]:
    """Conditions under which tsub's walk to ``segments`` is ours: each object on the way is plain."""
    return [_plain_object(_path(segments[:k])) for k in range(1, len(segments))]


def _guarded(segments: list[str], test: list, when_missing: bool) -> list:
    """``test`` where the walk is ours, else what ours answers for a missing field."""
    guard = _guard(segments)
    if not guard:
        return test
    if when_missing:
        return ["or", ["!", ["and", *guard]], test]
    return ["and", *guard, test]


def _literal(value: Any) -> dict[str, Any]:
    if isinstance(value, float) and not math.isfinite(value):
        raise Untranslatable("a number too large for JSON")
    return {"value": value}


def _is_undefined(path: str) -> list:
    return ["=", ["typeof", path], {"value": "undefined"}]


def _eval_constant(node: list) -> bool:
    from server.fql import _compile

    return bool(_compile(node)({}))


def condition_ir(tree: list) -> Any:
    """Our condition AST (server/fql.py) as tsub IR with the same answer on every event."""
    op = tree[0]
    if op in ("and", "or"):
        return [op, *(condition_ir(n) for n in tree[1:])]
    if op == "not":
        return ["!", condition_ir(tree[1])]
    paths = [n for n in tree[1:] if isinstance(n, list) and n[:1] == ["path"]]
    if op == "cmp":
        paths = [n for n in tree[2:] if n[0] == "path"]
    if not paths:  # literals only: the answer is known now
        return _const(_eval_constant(tree))
    if op == "truthy":
        segs = tree[1][1]
        p = _path(segs)
        test = ["and", ["!", _is_undefined(p)], *(["!=", p, {"value": v}] for v in (None, False, 0, ""))]
        return _guarded(segs, test, False)
    if op == "exists":
        segs = tree[1][1]
        p = _path(segs)
        return _guarded(segs, ["and", ["!", _is_undefined(p)], ["!=", p, {"value": None}]], False)
    if op == "match":
        pattern = tree[2][1]
        if "?" in pattern:
            raise Untranslatable("'?' in a match() pattern (tsub's matches one UTF-16 unit, ours one character)")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in pattern):
            raise Untranslatable("a lone surrogate in a match() pattern")
        escaped = "".join("\\" + c if c in "[]\\" else c for c in pattern)
        segs = tree[1][1]
        return _guarded(segs, ["match", _path(segs), {"value": escaped}], False)
    if op == "contains":
        hay, needle = tree[1], tree[2]
        if hay[0] == "path":
            raise Untranslatable("contains() on a field (ours also finds an element of a list; tsub cannot)")
        if not isinstance(hay[1], str):
            return FALSE
        segs = needle[1]
        return _guarded(segs, ["contains", {"value": hay[1]}, _path(segs)], False)
    if op == "cmp":
        return _comparison(tree[1], tree[2], tree[3])
    raise Untranslatable(f"the construct {op!r}")


def _comparison(how: str, left: list, right: list) -> Any:
    both = left[0] == right[0] == "path"
    if how in ("=", "!="):
        if both:
            raise Untranslatable("= or != between two fields (objects and lists compare differently in tsub)")
        segs, value = (left[1], right[1]) if left[0] == "path" else (right[1], left[1])
        p, want = _path(segs), how == "="
        if value is None:  # a missing field equals null
            test = ["or", ["=", p, {"value": None}], _is_undefined(p)]
            return _guarded(segs, test if want else ["!", test], want)
        return _guarded(segs, [how, p, _literal(value)], not want)
    # < <= > >=: numbers only, anything else (a missing field among them) is false
    for side in (left, right):
        if side[0] == "lit" and (isinstance(side[1], bool) or not isinstance(side[1], (int, float))):
            return FALSE
    operands: list[Any] = [_path(s[1]) if s[0] == "path" else _literal(s[1]) for s in (left, right)]
    guards: list[Any] = [g for s in (left, right) if s[0] == "path" for g in _guard(s[1])]
    compare: list[Any] = [how, *operands]
    return ["and", *guards, compare] if guards else compare


# ---------------------------------------------------------------- filters → rules


def _paths_read(tree: list) -> list[list[str]]:
    if tree[0] == "path":
        return [tree[1]]
    return [p for n in tree[1:] if isinstance(n, list) for p in _paths_read(n)]


def _overlaps(a: list[str], b: list[str]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _changes(tree: list, ir: Any, groups: dict[tuple[str, ...], list[str]], kind: str) -> list[tuple[Any, list]]:
    """(matcher IR, transformers) pairs that change the objects in ``groups`` (object path → keys)
    only when the condition held on the event as it was. tsub re-evaluates the condition before
    each pair, so the pairs that change what the condition reads must be one, and run last."""
    read = _paths_read(tree)
    touched = [g for g in groups if any(_overlaps(list(g), p) for p in read)]
    if len(touched) > 1 and len(groups) > 1:
        raise Untranslatable(f"{kind} whose condition reads fields of more than one of the objects it changes")
    pairs = []
    for group in sorted(groups, key=lambda g: g in touched):
        segs = list(group)
        guard = [*_guard(segs), _plain_object(_path(segs))]
        config = {"drop" if kind == "drop_properties" else "allow": {_path(segs): groups[group]}}
        pairs.append((["and", ir, *guard], [{"type": kind, "config": config}]))
    return pairs


def _pairs(item: dict[str, Any]) -> list[tuple[Any, list]]:
    tree = compile_condition(item["if"])[0]
    ir = condition_ir(tree)
    action = item["action"]
    if action == "drop":
        return [(ir, [{"type": "drop"}])]
    if action == "only":
        return [(["!", ir], [{"type": "drop"}])]
    if action == "sample":
        if item["percent"] >= 100:
            return []  # every matching event is sent: nothing to do
        if item["percent"] <= 0:
            return [(ir, [{"type": "drop"}])]
        raise Untranslatable("sample between 0 and 100 % (tsub picks events by its own hash, not by our messageId bucket)")
    groups: dict[tuple[str, ...], list[str]] = {}
    for field in item["fields"]:
        parts = field.split(".")
        if action == "allow_properties" and len(parts) > 2:
            raise Untranslatable(f"allow_properties with the nested path {field!r} (tsub keeps whole keys of one object)")
        _path(parts)
        groups.setdefault(tuple(parts[:-1]), []).append(parts[-1])
    return _changes(tree, ir, groups, action)


def routing_rules(destination_name: str, filters: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A destination's filters (cleaned by ``server.rules.check_filters``) as tsub routing rules, in
    order, one rule per filter (none for a 100 % sample); ``Untranslatable`` if any filter is not."""
    rules = []
    for number, item in enumerate(filters or (), 1):
        try:
            pairs = _pairs(item)
        except Untranslatable as exc:
            raise Untranslatable(f"filter {number} ({item['if']}): {exc}") from None
        if not pairs:
            continue
        rules.append({
            "scope": "destinations",
            "target_type": TARGET_TYPE,
            "destinationName": destination_name,
            "matchers": [{"type": "fql", "ir": json.dumps(ir, ensure_ascii=False, allow_nan=False),
                          "config": {"expr": item["if"]}} for ir, _ in pairs],
            "transformers": [transformers for _, transformers in pairs],
        })
    return rules

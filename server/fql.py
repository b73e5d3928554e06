"""A documented subset of Segment's Filter Query Language (FQL), for destination filters
(docs/filters.md): a hand-written tokenizer and recursive-descent parser that turn a condition
into a small JSON AST, and an evaluator over that AST. Never ``eval``.

Why our own: the language is ~15 tokens, and the very same AST must be evaluated by the browser
(js_templates/filters.js), so Python and JavaScript share one tree shape and one set of rules
instead of two grammars. ``compile_condition`` is cached by the condition's text, so a filter
compiles once however many events (and settings versions) use it.

The AST (JSON-able lists, so it can go into a bundle through ``tojson``):
``["or", a, b…]``, ``["and", a, b…]``, ``["not", a]``, ``["cmp", op, x, y]``,
``["match", x, pattern]``, ``["contains", x, y]``, ``["exists", path]``, ``["truthy", x]``;
operands are ``["path", [segment…]]`` or ``["lit", value]``.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

MISSING = object()  # a path that leads nowhere (JavaScript: undefined)
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
FUNCTIONS = {"match": 2, "contains": 2, "exists": 1}
MAX_LENGTH = 2000
MAX_DEPTH = 50  # nested parentheses and negations: the parser and both evaluators recurse


class FqlError(ValueError):
    """A condition that does not parse; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at character {position})")
        self.message, self.position = message, position


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>!=|<=|>=|=|<|>|!|\(|\)|,|\.)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$-]*|`[^`]*`)
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            if text[i] in "\"'`":
                raise FqlError("unterminated quote", i)
            raise FqlError(f"unexpected character {text[i]!r}", i)
        kind, raw = m.lastgroup, m.group()
        if kind == "num":
            out.append(("lit", float(raw) if any(c in raw for c in ".eE") else int(raw), i))
        elif kind == "str":
            out.append(("lit", re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), raw[1:-1]), i))
        elif kind == "name":
            word = raw[1:-1] if raw.startswith("`") else raw
            if raw.startswith("`"):
                out.append(("name", word, i))
            elif word in ("true", "false", "null"):
                out.append(("lit", {"true": True, "false": False, "null": None}[word], i))
            elif word in ("and", "or"):
                out.append(("op", word, i))
            else:
                out.append(("name", word, i))
        elif kind == "op":
            out.append(("op", raw, i))
        i = m.end()
    out.append(("end", None, len(text)))
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks, self.i, self.depth = _tokens(text), 0, 0

    def peek(self, value: Any = None) -> bool:
        kind, tok, _ = self.toks[self.i]
        return kind == "op" and tok == value

    def take(self) -> tuple[str, Any, int]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, tok, pos = self.take()
        if kind != "op" or tok != value:
            raise FqlError(f"expected {value!r}, found {_describe(kind, tok)}", pos)

    def parse(self) -> list:
        tree = self.either()
        kind, tok, pos = self.toks[self.i]
        if kind != "end":
            raise FqlError(f"unexpected {_describe(kind, tok)}", pos)
        return tree

    def either(self) -> list:
        parts = [self.both()]
        while self.peek("or"):
            self.take()
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else ["or", *parts]

    def both(self) -> list:
        parts = [self.unary()]
        while self.peek("and"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else ["and", *parts]

    def unary(self) -> list:
        if self.peek("!") or self.peek("("):
            kind, tok, pos = self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FqlError(f"more than {MAX_DEPTH} nested parentheses or negations", pos)
            if tok == "!":
                inner = ["not", self.unary()]
            else:
                inner = self.either()
                self.expect(")")
            self.depth -= 1
            return inner
        left = self.operand()
        kind, tok, _ = self.toks[self.i]
        if kind == "op" and tok in COMPARISONS:
            self.take()
            return ["cmp", tok, left, self.operand()]
        return left if left[0] in ("match", "contains", "exists") else ["truthy", left]

    def operand(self) -> list:
        kind, tok, pos = self.take()
        if kind == "lit":
            return ["lit", tok]
        if kind != "name":
            raise FqlError(f"expected a field, a value or a function, found {_describe(kind, tok)}", pos)
        if tok in FUNCTIONS and self.peek("("):
            self.take()
            args = [self.operand()]
            while self.peek(","):
                self.take()
                args.append(self.operand())
            if len(args) != FUNCTIONS[tok]:
                raise FqlError(f"{tok}() takes {FUNCTIONS[tok]} argument(s), not {len(args)}", pos)
            self.expect(")")
            if tok == "exists" and args[0][0] != "path":
                raise FqlError("exists() takes a field path", pos)
            if tok == "match" and not (args[1][0] == "lit" and isinstance(args[1][1], str)):
                raise FqlError("match() takes a quoted pattern as its second argument", pos)
            return [tok, *args] if tok != "exists" else ["exists", args[0]]
        path = [tok]
        while self.peek("."):
            self.take()
            k, seg, p = self.take()
            if k != "name":
                raise FqlError(f"expected a field name after '.', found {_describe(k, seg)}", p)
            path.append(seg)
        return ["path", path]


def _describe(kind: str, tok: Any) -> str:
    if kind == "end":
        return "the end of the condition"
    if kind == "lit":
        return f"the value {tok!r}"
    return repr(tok)


def parse(text: Any) -> list:
    """The AST of a condition; raises ``FqlError`` with the position of the first problem."""
    if not isinstance(text, str) or not text.strip():
        raise FqlError("a condition is required", 0)
    if len(text) > MAX_LENGTH:
        raise FqlError(f"a condition is at most {MAX_LENGTH} characters", MAX_LENGTH)
    return _Parser(text).parse()


# ---------------------------------------------------------------- evaluation


def lookup(event: Any, path: list[str]) -> Any:
    for segment in path:
        if not isinstance(event, dict) or segment not in event:
            return MISSING
        event = event[segment]
    return event


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def equal(a: Any, b: Any) -> bool:
    """JSON equality: a missing field equals null; true is not 1; 1 equals 1.0."""
    a, b = (None if a is MISSING else a), (None if b is MISSING else b)
    if _number(a) and _number(b):
        return a == b
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return a == b


def truthy(v: Any) -> bool:
    """JavaScript's truthiness, so the browser agrees: lists and objects are true, even empty."""
    if v is MISSING or v is None or v is False:
        return False
    if _number(v):
        return v != 0
    return v != ""


@functools.lru_cache(maxsize=1024)
def glob(pattern: str) -> re.Pattern:
    """``*`` is any run of characters, ``?`` one character; everything else is literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


def _compile(node: list) -> Callable[[Any], Any]:
    op = node[0]
    if op == "lit":
        value = node[1]
        return lambda e: value
    if op == "path":
        path = node[1]
        return lambda e: lookup(e, path)
    if op in ("or", "and"):
        parts = [_compile(n) for n in node[1:]]
        return (lambda e: any(p(e) for p in parts)) if op == "or" else (lambda e: all(p(e) for p in parts))
    if op == "not":
        inner = _compile(node[1])
        return lambda e: not inner(e)
    if op == "truthy":
        inner = _compile(node[1])
        return lambda e: truthy(inner(e))
    if op == "exists":
        inner = _compile(node[1])
        return lambda e: inner(e) not in (MISSING, None)
    if op == "match":
        subject, rx = _compile(node[1]), glob(node[2][1])
        return lambda e: isinstance(s := subject(e), str) and rx.fullmatch(s) is not None
    if op == "contains":
        hay, needle = _compile(node[1]), _compile(node[2])
        return lambda e: _contains(hay(e), needle(e))
    if op == "cmp":
        x, y, how = _compile(node[2]), _compile(node[3]), node[1]
        if how in ("=", "!="):
            same = how == "="
            return lambda e: equal(x(e), y(e)) == same
        order = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
                 ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[how]
        return lambda e: _number(a := x(e)) and _number(b := y(e)) and order(a, b)
    raise ValueError(f"unknown FQL node {op!r}")


def _contains(hay: Any, needle: Any) -> bool:
    if isinstance(hay, str):
        return isinstance(needle, str) and needle in hay
    if isinstance(hay, list):
        return any(equal(item, needle) for item in hay)
    return False


@functools.lru_cache(maxsize=4096)
def compile_condition(text: str) -> tuple[list, Callable[[Any], bool]]:
    """(AST, predicate) of a condition, compiled once per distinct text (FqlError if bad)."""
    tree = parse(text)
    predicate = _compile(tree)
    return tree, lambda event: bool(predicate(event))


def evaluate(text: str, event: Any) -> bool:
    return compile_condition(text)[1](event)

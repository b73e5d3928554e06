"""Slack message templates in a sandbox that bounds what a template can cost.

Jinja2's ``SandboxedEnvironment`` stops a template from reaching Python internals, but not from
spending unbounded CPU or memory: ``{{ 9**(9**9) > 1 }}`` computes a number with 8 billion
digits, ``'x' * 10**10`` allocates 10 GB, and nested loops run for hours. A template runs inside
the delivery worker, which shares its process (and its event loop) with the collector, the API
and the web app in ``switchboard serve``; one such job froze all of them, again after every
restart while the job stayed due. So this environment adds budgets, per render:

- arithmetic: ``**``, ``*``, ``+`` and ``~`` are checked *before* they run — a number may have
  at most ``MAX_INT_BITS`` bits, a string or list at most ``MAX_LENGTH`` items; ``%`` string
  formatting, whose field widths can allocate gigabytes, is refused;
- ``range`` yields at most ``MAX_RANGE`` numbers; the loops of one render run at most
  ``MAX_STEPS`` iterations in all; ``join`` and ``replace`` check the length of their result
  first; filters and methods that can build large strings from small inputs (``center``,
  ``indent``, ``format``, ``ljust`` …) are not available; only a list of read-only string, list
  and dict methods is;
- time: a deadline (``DEADLINE_S``) checked in every loop iteration, call, operator, attribute
  lookup and output, so a render stops within a few milliseconds of it;
- output: at most ``MAX_OUTPUT`` characters (Slack's own limit for a message's text), counted
  as it is produced.

A template over a budget raises ``TemplateLimitError``; the delivery worker makes that job a
dead letter with the message, like any translator failure. ``check_template`` is what saving a
template runs (through the catalog's ``"format": "template"``): too long, not compiling, or over
a budget on a sample event is a 422 ``invalid_template``.
"""

from __future__ import annotations

import contextvars
import functools
import time
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace
from jinja2.visitor import NodeTransformer

MAX_TEMPLATE = 4000  # characters of template source
MAX_INT_BITS = 4096
MAX_LENGTH = 100_000  # items of a string or list made by an operator, join or replace
MAX_RANGE = 10_000
MAX_STEPS = 20_000  # loop iterations per render, all loops together
MAX_OUTPUT = 40_000  # characters: Slack truncates a message's text beyond this
DEADLINE_S = 0.25

_SAFE_METHODS = {
    str: frozenset({
        "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha", "isdecimal",
        "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper", "join", "lower", "lstrip",
        "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rpartition", "rsplit",
        "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper",
    }),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
}
_SAFE_FILTERS = (
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "groupby",
    "int", "items", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "reverse",
    "round", "safe", "select", "selectattr", "sort", "string", "striptags", "title", "trim", "truncate", "unique",
    "upper", "wordcount",
)


class TemplateLimitError(SecurityError):
    """A template went over one of the sandbox's budgets while rendering."""


class TemplateError(ValueError):
    """A template that cannot be saved: too long, not compiling, or over a budget on a sample event."""


class _Budget:
    __slots__ = ("deadline", "steps", "output")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + DEADLINE_S
        self.steps = 0
        self.output = 0


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("slack_template_budget", default=None)


def _tick() -> _Budget:
    budget = _budget.get()
    if budget is None:  # rendering outside render() (never done here): give it a budget of its own
        budget = _Budget()
        _budget.set(budget)
    if time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"the template took longer than {DEADLINE_S:g}s to render (stopped)")
    return budget


def _length_ok(n: int, what: str) -> None:
    if n > MAX_LENGTH:
        raise TemplateLimitError(f"{what} would be {n:,} long; templates may build at most {MAX_LENGTH:,}")


def _sized(value: Any) -> bool:
    return isinstance(value, (str, list, tuple))


def _check_binop(operator: str, left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0:
        if max(abs(left).bit_length(), 1) * right > MAX_INT_BITS and abs(left) > 1:
            raise TemplateLimitError(f"{left} ** {right} is too large a number for a template "
                                     f"(at most {MAX_INT_BITS} bits)")
    elif operator == "*":
        if ints and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"a product over {MAX_INT_BITS} bits is too large a number for a template")
        if _sized(left) and isinstance(right, int):
            _length_ok(len(left) * right, "a repeated string or list")
        elif _sized(right) and isinstance(left, int):
            _length_ok(len(right) * left, "a repeated string or list")
    elif operator == "+" and _sized(left) and _sized(right):
        _length_ok(len(left) + len(right), "a joined string or list")
    elif operator == "%" and isinstance(left, str):
        raise TemplateLimitError("string formatting with % is not available in templates; use ~ to join text")


def _safe_range(*args: int) -> Any:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimitError(f"range() of {len(numbers):,} numbers; templates may use at most {MAX_RANGE:,}")
    return numbers


@pass_context  # context-dependent filters are never run at compile time (constant folding)
def _guard_iter(context, iterable: Any):
    """Wraps every {% for %} loop's iterable: one budget step and a deadline check per item."""
    budget = _tick()
    for item in iterable:
        budget.steps += 1
        if budget.steps > MAX_STEPS:
            raise TemplateLimitError(f"the template's loops ran more than {MAX_STEPS:,} times")
        if time.monotonic() > budget.deadline:
            raise TemplateLimitError(f"the template took longer than {DEADLINE_S:g}s to render (stopped)")
        yield item


@pass_context
def _guard_concat(context, parts: list) -> str:
    """``a ~ b``: the joined length is checked before joining."""
    _tick()
    texts = [str(p) for p in parts]
    _length_ok(sum(map(len, texts)), "a joined string")
    return "".join(texts)


def _join_length(separator: str, items: list) -> int:
    return sum(len(str(i)) for i in items) + len(separator) * max(len(items) - 1, 0)


@pass_context
def _guard_join(context, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is not None:
        items = [context.environment.getitem(i, attribute) for i in items]
    _length_ok(_join_length(str(d), items), "a joined string")
    return str(d).join(str(i) for i in items)


def _replace_length(text: str, old: str, new: str, count: int = -1) -> int:
    found = text.count(old)  # "" is found len(text) + 1 times, as replace inserts it
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


@pass_context
def _guard_replace(context, value: Any, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    _length_ok(_replace_length(text, old, new, -1 if count is None else count), "a replaced string")
    return text.replace(old, new, -1 if count is None else count)


class _GuardLoops(NodeTransformer):
    """Rewrites the parsed template: every loop's iterable goes through ``_guard_iter`` and every
    ``~`` through ``_guard_concat`` (neither is an operator the sandbox can intercept)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_sb_iter", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), "_sb_concat", [], [], None, None,
                            lineno=node.lineno)


class BoundedEnvironment(SandboxedEnvironment):
    """A SandboxedEnvironment whose templates cannot run long or build large values."""

    intercepted_binops = frozenset({"**", "*", "+", "%", "//", "/", "-"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.filters = {name: self.filters[name] for name in _SAFE_FILTERS}
        self.filters.update(join=_guard_join, replace=_guard_replace, _sb_iter=_guard_iter, _sb_concat=_guard_concat)
        self.globals = {"range": _safe_range, "dict": dict, "namespace": Namespace, "cycler": Cycler,
                        "joiner": Joiner}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _GuardLoops().visit(super()._parse(source, name, filename))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        for kind, allowed in _SAFE_METHODS.items():
            if isinstance(obj, kind) and callable(value):
                return attr in allowed
        return True

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            # Jinja hands these out wrapped in its own formatter, which checks attribute access
            # but not field widths: '{:>999999999}'.format(1) would allocate a gigabyte.
            raise TemplateLimitError("str.format is not available in templates; use ~ to join text")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - jinja's signature
        _tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name == "replace" and len(args) >= 2:
                count = args[2] if len(args) > 2 else kwargs.get("count", -1)
                _length_ok(_replace_length(owner, str(args[0]), str(args[1]), count), "a replaced string")
            elif name == "join" and args:
                items = list(args[0])
                _length_ok(_join_length(owner, items), "a joined string")
                args = (items, *args[1:])
        return super().call(__context, __obj, *args, **kwargs)


def slack_escape(value: Any) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _finalize(value: Any) -> str:
    """Runs on every {{ expression }} output: values are escaped, template text is not."""
    _tick()
    return "" if value is None else slack_escape(value)


@functools.lru_cache(maxsize=1)
def environment() -> BoundedEnvironment:
    return BoundedEnvironment(autoescape=False, finalize=_finalize)


@functools.lru_cache(maxsize=256)
def compile_template(source: str):
    if len(source) > MAX_TEMPLATE:
        raise TemplateLimitError(f"the template is longer than {MAX_TEMPLATE:,} characters")
    return environment().from_string(source)


def render(source: str, variables: dict[str, Any]) -> str:
    """Render under a fresh budget; output is counted as it is produced."""
    template = compile_template(source)
    token = _budget.set(_Budget())
    try:
        chunks: list[str] = []
        size = 0
        for chunk in template.root_render_func(template.new_context(variables)):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateLimitError(f"the message would be longer than {MAX_OUTPUT:,} characters")
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _budget.reset(token)


SAMPLE_VARIABLES = {
    "type": "track", "event": "Order Completed", "name": "Test User", "userId": "user-1", "anonymousId": "anon-1",
    "messageId": "sample", "properties": {"revenue": 42.5, "currency": "EUR", "products": [{"sku": "A-1", "price": 42.5}]},
    "traits": {"name": "Test User", "email": "test@example.com"}, "context": {"page": {"url": "https://example.com/"}},
}


def check_template(source: str, sample: dict[str, Any] | None = None) -> None:
    """What saving a template checks: its size, that it compiles, and a trial render on a sample
    event within the budgets (errors that only say the sample lacks a field don't count)."""
    if len(source) > MAX_TEMPLATE:
        raise TemplateError(f"is longer than {MAX_TEMPLATE:,} characters")
    try:
        compile_template(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"does not compile: {exc.message} (line {exc.lineno})") from None
    except SecurityError as exc:
        raise TemplateError(f"is not allowed: {exc}") from None
    try:
        render(source, sample or SAMPLE_VARIABLES)
    except TemplateLimitError as exc:
        raise TemplateError(f"exceeds the sandbox's limits: {exc}") from None
    except Exception:  # noqa: BLE001 - a real event may well have the field the sample lacks
        pass

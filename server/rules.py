"""Segment's per-event routing rules, shared by cloud delivery, the warehouse loader and the
debugger's "routed to".

Two rules decide whether an event may go to a destination (besides its mode and call types):

- ``integrations``: ``All`` (default true) is the default for every destination; a key equal to
  the destination's name or one of its aliases overrides it; only ``false`` turns it off.
- consent (docs/consent.md): a destination with ``consent_categories`` takes the event only when
  ``context.consent.categoryPreferences`` grants each of them exactly ``true``. No preferences at
  all (server-side SDKs, clients that know nothing of consent) means "not gated", as Segment
  documents; preferences that are there but not an object grant nothing (a client that sends
  consent is gated by it, and a malformed answer is not a yes).

The browser core applies the same rules in JavaScript (js_templates/core). Planes import this
module, never each other.
"""

from __future__ import annotations

from typing import Any, Iterable

from server.catalog import CONSENT_KEY


def integrations_allow(event: dict[str, Any], names: Iterable[str]) -> bool:
    options = event.get("integrations")
    if not isinstance(options, dict):
        return True
    for name in names:
        if name in options:
            return options[name] is not False
    return options.get("All", True) is not False


def missing_consent(event: dict[str, Any], settings: dict[str, Any] | None) -> list[str]:
    """The destination's consent categories this event does not grant; [] when it may go."""
    needed = (settings or {}).get(CONSENT_KEY) or []
    if not needed:
        return []
    context = event.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    preferences = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if preferences is None:
        return []
    if not isinstance(preferences, dict):
        return list(needed)
    return [name for name in needed if preferences.get(name) is not True]


def why_not_routed(event: dict[str, Any], call: str, destination: dict[str, Any], manifest: Any) -> str | None:
    """The routing decision, in one place: why ``destination`` (``enabled``, ``mode``,
    ``settings``, ``filters``) does not get this ``call``, or None when it does. Cloud delivery
    (server/delivery/router.py) and the debugger (server/web/routing.py) both ask this."""
    return decide(event, call, destination, manifest)[0]


def decide(event: dict[str, Any], call: str, destination: dict[str, Any], manifest: Any) -> tuple[str | None, list[str]]:
    """(why not routed or None, what the destination's filters did): the debugger shows both."""
    refused = _refusal(event, call, destination, manifest)
    if refused:
        return refused, []
    sent, notes = apply_filters(event, destination.get("filters"))
    return (notes[-1] if sent is None else None), notes


def _refusal(event: dict[str, Any], call: str, destination: dict[str, Any], manifest: Any) -> str | None:
    if not destination["enabled"]:
        return "destination is disabled"
    if call not in manifest.methods.get(destination["mode"], ()):
        return f"{destination['mode']} mode does not take {call} calls"
    if not integrations_allow(event, manifest.integration_names):
        return "turned off by the event's integrations option"
    missing = missing_consent(event, destination.get("settings"))
    if missing:
        return f"the visitor has not consented to {', '.join(missing)}"
    return None


# ---------------------------------------------------------------- destination filters (docs/filters.md)

FILTER_ACTIONS = ("drop", "only", "drop_properties", "allow_properties", "sample")
FIELD_ROOTS = ("properties", "traits", "context")
MAX_FILTERS = 50


class FilterError(ValueError):
    """A destination's filter list is not valid: ``index`` of the filter, ``field`` in it, and
    ``position`` in its condition when the condition does not parse."""

    def __init__(self, message: str, index: int, field: str, position: int | None = None):
        super().__init__(message)
        self.message, self.index, self.field, self.position = message, index, field, position


def check_filters(filters: Any) -> list[dict[str, Any]]:
    """The cleaned, ordered filter list (each ``{"if", "action"[, "fields"][, "percent"]}``)."""
    from server.fql import FqlError, compile_condition

    if not isinstance(filters, list):
        raise FilterError("filters must be a list", 0, "filters")
    if len(filters) > MAX_FILTERS:
        raise FilterError(f"a destination has at most {MAX_FILTERS} filters", MAX_FILTERS, "filters")
    cleaned = []
    for index, item in enumerate(filters):
        if not isinstance(item, dict):
            raise FilterError("each filter must be an object", index, "filters")
        unknown = sorted(set(item) - {"if", "action", "fields", "percent"})
        if unknown:
            raise FilterError(f"{unknown[0]!r} is not a filter key", index, unknown[0])
        try:
            compile_condition(item.get("if"))
        except FqlError as exc:
            raise FilterError(exc.message, index, "if", exc.position) from None
        except TypeError:  # not hashable: not text
            raise FilterError("a condition is required", index, "if", 0) from None
        action = item.get("action")
        if action not in FILTER_ACTIONS:
            raise FilterError(f"action must be one of {', '.join(FILTER_ACTIONS)}", index, "action")
        clean: dict[str, Any] = {"if": item["if"], "action": action}
        if action in ("drop_properties", "allow_properties"):
            fields = item.get("fields")
            if not isinstance(fields, list) or not fields or not all(_field_path(f) for f in fields):
                raise FilterError("fields must be a non-empty list of paths such as properties.email "
                                  f"(under {', '.join(FIELD_ROOTS)})", index, "fields")
            clean["fields"] = list(dict.fromkeys(f.strip() for f in fields))
        if action == "sample":
            percent = item.get("percent")
            if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
                raise FilterError("percent must be a number from 0 to 100", index, "percent")
            clean["percent"] = percent
        cleaned.append(clean)
    return cleaned


def _field_path(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.strip().split(".")
    return len(parts) >= 2 and parts[0] in FIELD_ROOTS and all(parts) and len(value) <= 300


def compiled_filters(filters: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """What the browser interpreter gets (js_templates/filters.js): the conditions as ASTs."""
    from server.fql import compile_condition

    return [{**f, "if": compile_condition(f["if"])[0]} for f in filters or ()]


def sample_bucket(message_id: Any) -> int:
    """0..9999 from the messageId: FNV-1a over its UTF-16 code units, as the browser does."""
    h = 0x811C9DC5
    data = (message_id if isinstance(message_id, str) else "").encode("utf-16-le", "surrogatepass")
    for i in range(0, len(data), 2):
        h = ((h ^ (data[i] | data[i + 1] << 8)) * 0x01000193) & 0xFFFFFFFF
    return h % 10000


def apply_filters(event: dict[str, Any], filters: list[dict[str, Any]] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """Run a destination's filters, in order, over ``event``: (the event to send, or None when a
    filter drops it; what each filter that applied did). The event is copied before a change."""
    from server.fql import compile_condition

    notes: list[str] = []
    for number, f in enumerate(filters or (), 1):
        hit = compile_condition(f["if"])[1](event)
        action, label = f["action"], f"filter {number} ({f['if']})"
        if action == "only":
            if not hit:
                return None, notes + [f"dropped by {label}: only matching events are sent"]
            continue
        if not hit:
            continue
        if action == "drop":
            return None, notes + [f"dropped by {label}"]
        if action == "sample":
            if sample_bucket(event.get("messageId")) >= f["percent"] * 100:
                return None, notes + [f"sampled out by {label}: {f['percent']:g}% are sent"]
            notes.append(f"sampled in by {label}")
        elif action == "drop_properties":
            event, removed = _without(event, f["fields"])
            notes.append(f"{label} removed {', '.join(removed) or 'nothing (no such fields)'}")
        elif action == "allow_properties":
            event = _only(event, f["fields"])
            notes.append(f"{label} kept only {', '.join(f['fields'])}")
    return event, notes


def _copy(event: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(event)


def _without(event: dict[str, Any], fields: list[str]) -> tuple[dict[str, Any], list[str]]:
    event, removed = _copy(event), []
    for field in fields:
        *parents, last = field.split(".")
        node: Any = event
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            del node[last]
            removed.append(field)
    return event, removed


def _only(event: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Each root named in ``fields`` (properties, traits, context) keeps only the listed paths."""
    event = _copy(event)
    for root in dict.fromkeys(f.split(".")[0] for f in fields):
        old = event.get(root)
        if not isinstance(old, dict):
            continue
        new: dict[str, Any] = {}
        for field in fields:
            parts = field.split(".")
            if parts[0] != root:
                continue
            src: Any = old
            for part in parts[1:]:
                src = src.get(part, _ABSENT) if isinstance(src, dict) else _ABSENT
            if src is _ABSENT:
                continue
            dst = new
            for part in parts[1:-1]:
                if not isinstance(dst.get(part), dict):
                    dst[part] = {}
                dst = dst[part]
            dst[parts[-1]] = src
        event[root] = new
    return event


_ABSENT = object()

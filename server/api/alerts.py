"""Alert rules as the API and the web app take them: one validation for both (docs/alerts.md).

A rule: ``{"name", "kind", "destination_id" | "source_id", "threshold", "window_minutes",
"notify": {"destination_id": n} | {"email": ["ops@example.com"]}, "enabled"}``.

- ``failure_rate`` (destination): % of delivery attempts in the last ``window_minutes`` that failed
  is over ``threshold``.
- ``dead_letters`` (destination): more than ``threshold`` (default 0) dead letters in the window.
- ``delivery_lag`` (destination): the oldest undelivered job has waited over ``threshold`` seconds.
- ``no_events`` (source): no event received in the last ``window_minutes``.

Notifications go through a Slack or Webhooks destination (its settings; it need not be
switched on, which is about events) or by e-mail through the ``SWITCHBOARD_SMTP_*`` server.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine

from server.errors import ApiError
from server.store import alerts as store
from server.store import workspace

NOTIFY_SLUGS = ("webhooks", "slack")
MAX_WINDOW_MINUTES = 7 * 24 * 60
_EMAIL = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+$")
FIELDS = ("name", "kind", "destination_id", "source_id", "threshold", "window_minutes", "notify", "enabled")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", message, field=field)


def _number(body: dict, field: str, low: float, high: float, what: str) -> float:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _invalid(field, f"{field} must be {what} from {low:g} to {high:g}")
    return float(value)


def _id(body: dict, field: str) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**62:
        raise _invalid(field, f"{field} must be the id of a {field.split('_')[0]}")
    return value


def _notify(engine: Engine, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or len(raw) != 1 or not {"destination_id", "email"} >= raw.keys():
        raise _invalid("notify", 'notify must be {"destination_id": id} (a Slack or Webhooks destination) '
                                 'or {"email": ["address", …]}')
    if "email" in raw:
        addresses = raw["email"]
        if isinstance(addresses, str):
            addresses = [a.strip() for a in addresses.split(",") if a.strip()]
        if (not isinstance(addresses, list) or not 0 < len(addresses) <= 20
                or not all(isinstance(a, str) and len(a) <= 254 and _EMAIL.match(a) for a in addresses)):
            raise _invalid("notify", "notify.email must list 1 to 20 e-mail addresses like ops@example.com")
        return {"email": addresses}
    dest_id = _id(raw, "destination_id")
    try:
        destination = workspace.get_destination(engine, dest_id)
    except workspace.NotFound:
        raise _invalid("notify", f"there is no destination {dest_id} to notify through") from None
    if destination["slug"] not in NOTIFY_SLUGS:
        raise _invalid("notify", "alerts notify through a Slack or Webhooks destination")
    return {"destination_id": dest_id}


def validate(engine: Engine, body: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store values for a new rule (``current`` None) or the changes to one (a PATCH body)."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise _invalid(unknown[0], f"unknown field {unknown[0]}; a rule has {', '.join(FIELDS)}")
    merged = {**(public(current) if current else {}), **body}
    values: dict[str, Any] = {}
    name = merged.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise _invalid("name", "name must be text of 1 to 200 characters")
    values["name"] = name.strip()
    kind = merged.get("kind")
    if kind not in store.KINDS:
        raise _invalid("kind", f"kind must be one of {', '.join(store.KINDS)}")
    values["kind"] = kind
    if kind in store.SOURCE_KINDS:
        source_id = _id(merged, "source_id")
        try:
            workspace.get_source(engine, source_id)
        except workspace.NotFound:
            raise _invalid("source_id", f"there is no source {source_id}") from None
        values.update(source_id=source_id, destination_id=None)
    else:
        dest_id = _id(merged, "destination_id")
        try:
            workspace.get_destination(engine, dest_id)
        except workspace.NotFound:
            raise _invalid("destination_id", f"there is no destination {dest_id}") from None
        values.update(destination_id=dest_id, source_id=None)
    if kind == "failure_rate":
        values["threshold"] = _number(merged, "threshold", 0, 100, "a percentage")
    elif kind == "dead_letters":
        merged.setdefault("threshold", 0)
        values["threshold"] = _number(merged, "threshold", 0, 1e9, "a number of dead letters")
    elif kind == "delivery_lag":
        values["threshold"] = _number(merged, "threshold", 0.001, 1e7, "a number of seconds")
    else:
        values["threshold"] = 0.0
    if kind == "delivery_lag":
        merged.setdefault("window_minutes", 1)  # not used: the lag is measured now
    values["window_s"] = 60 * _number(merged, "window_minutes", 0.01, MAX_WINDOW_MINUTES, "a number of minutes")
    values["notify"] = _notify(engine, merged.get("notify"))
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid("enabled", "enabled must be true or false")
    values["enabled"] = enabled
    if current is None:
        return values
    return {k: v for k, v in values.items() if current.get(k) != v}


def public(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as the API answers it."""
    return {
        "id": rule.get("id"), "name": rule["name"], "kind": rule["kind"],
        "destination_id": rule["destination_id"], "source_id": rule["source_id"],
        "threshold": rule["threshold"], "window_minutes": round(rule["window_s"] / 60, 4),
        "notify": rule["notify"], "enabled": rule["enabled"], "state": rule.get("state", store.OK),
        "state_changed_at": _iso(rule.get("state_changed_at")), "last_value": rule.get("last_value"),
        "last_evaluated_at": _iso(rule.get("last_evaluated_at")),
        "created_at": _iso(rule.get("created_at")), "updated_at": _iso(rule.get("updated_at")),
    }


def public_event(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "at": _iso(event["at"])}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def create(engine: Engine, body: dict[str, Any], *, actor: str) -> dict[str, Any]:
    return public(store.create_rule(engine, validate(engine, body), actor=actor))


def change(engine: Engine, rule_id: int, body: dict[str, Any], *, actor: str) -> dict[str, Any] | None:
    current = store.get_rule(engine, rule_id)
    if current is None:
        return None
    changes = validate(engine, body, current)
    updated = store.update_rule(engine, rule_id, changes, actor=actor) if changes else current
    return None if updated is None else public(updated)

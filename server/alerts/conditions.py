"""What each kind of rule measures, and the sentence a notification says about it.

``check(engine, rule, now)`` → ``(breached, value, text)``: one aggregate query per rule
(server/store/alerts.py), so a pass over every rule stays cheap however busy delivery is.
Delivery lag is the age of the oldest undelivered job (queued or retrying), not a latency
percentile: a destination that has stopped delivering has no recent latencies at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from server.store import alerts as store
from server.store import workspace


def _minutes(rule: dict[str, Any]) -> str:
    minutes = rule["window_s"] / 60
    return f"{minutes:g} min" if minutes >= 1 else f"{rule['window_s']:g} s"


def names(engine: Engine) -> dict[tuple[str, int], str]:
    """("destination"|"source", id) → what a person calls it ("Shop → webhooks #3"): two queries a pass."""
    sources = {s["id"]: s["name"] for s in workspace.list_sources(engine)}
    found: dict[tuple[str, int], str] = {("source", i): f"source {n}" for i, n in sources.items()}
    for d in workspace.list_destinations(engine):
        found[("destination", d["id"])] = f"{sources.get(d['source_id'], '?')} → {d['slug']} #{d['id']}"
    return found


def check(engine: Engine, rule: dict[str, Any], now: datetime,
          labels: dict[tuple[str, int], str] | None = None) -> tuple[bool, float, str]:
    kind, threshold = rule["kind"], rule["threshold"]
    labels = labels or {}
    dest = labels.get(("destination", rule["destination_id"]), f"destination {rule['destination_id']}")
    source = labels.get(("source", rule["source_id"]), f"source {rule['source_id']}")
    since = store.window_start(now, rule["window_s"])
    if kind == "failure_rate":
        rate, attempts = store.measure_failure_rate(engine, rule["destination_id"], since)
        text = (f"{rate:.0f}% of {attempts} delivery attempts to {dest} failed "
                f"in the last {_minutes(rule)} (alert above {threshold:g}%)")
        return attempts > 0 and rate > threshold, rate, text
    if kind == "dead_letters":
        count = store.measure_dead_letters(engine, rule["destination_id"], since)
        text = (f"{count} delivery jobs to {dest} became dead letters "
                f"in the last {_minutes(rule)} (alert above {threshold:g})")
        return count > threshold, float(count), text
    if kind == "delivery_lag":
        lag = store.measure_lag(engine, rule["destination_id"], now)
        text = (f"the oldest undelivered job to {dest} has waited {lag:.0f} s "
                f"(alert above {threshold:g} s)")
        return lag > threshold, lag, text
    if kind == "no_events":
        last = store.last_event_at(engine, rule["source_id"])
        age = (now - last).total_seconds() if last is not None else None
        when = "never" if age is None else f"{age:.0f} s ago"
        text = f"{source} last received an event {when} (alert after {_minutes(rule)} without one)"
        return age is None or age > rule["window_s"], (age if age is not None else -1.0), text
    raise ValueError(f"unknown alert kind {kind!r}")

"""What browsers post to ``/v1/m``: analytics-next's own counters, counted and never stored.

The body is ``{"series": [{"type": "Counter", "metric": "analytics_js.invoke.track",
"value": 1, "tags": {…}}, …]}``. Each series adds its value to a Prometheus counter labelled
with the metric name; names are client-chosen, so only well-formed ones become labels and at
most ``MAX_NAMES`` of them (the rest count under "other").
"""

from __future__ import annotations

import re
import threading
from typing import Any

from prometheus_client import Counter

MAX_NAMES = 100
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")

client_metrics = Counter(
    "switchboard_client_metrics",
    "Counters reported by browser libraries on the Tracking API's /v1/m",
    ["metric"],
)
_names: set[str] = set()
_lock = threading.Lock()


def record(body: dict[str, Any]) -> int:
    """Count the series in ``body``; returns how many were counted."""
    series = body.get("series")
    if not isinstance(series, list):
        return 0
    counted = 0
    for entry in series:
        if not isinstance(entry, dict):
            continue
        value = entry.get("value", 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
            continue
        client_metrics.labels(metric=_label(entry.get("metric"))).inc(value)
        counted += 1
    return counted


def _label(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        return "other"
    if name in _names:
        return name
    with _lock:
        if len(_names) >= MAX_NAMES:
            return "other"
        _names.add(name)
    return name

"""Prometheus counters for the Tracking API (exposed wherever the app serves /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

events_total = Counter(
    "switchboard_collector_events", "Events accepted by the Tracking API", ["outcome"]  # stored | duplicate | suppressed
)
rejections_total = Counter(
    "switchboard_collector_rejections", "Tracking API requests refused, by error code", ["code"]
)
group_size = Histogram(
    "switchboard_collector_group_commit_events",
    "Events stored per group commit",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000),
)
stored = events_total.labels(outcome="stored")
duplicate = events_total.labels(outcome="duplicate")
suppressed = events_total.labels(outcome="suppressed")  # acknowledged, not stored: the user is suppressed

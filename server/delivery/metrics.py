"""``GET /metrics``: Prometheus text exposition of delivery state, read from the database at scrape
time (so one scrape sees every worker process's work).

Protected: ``Authorization: Bearer <SWITCHBOARD_METRICS_TOKEN>`` when that is set, or any admin
token. Without either the answer is 401 (JSON), like every other protected route.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.auth import bearer_token, is_admin
from server.errors import ApiError
from server.store import delivery as store
from server.store import delivery_stats as queries
from server.store import workspace

FINISHED = (store.DELIVERED, store.DEAD, store.SKIPPED)


class DeliveryCollector:
    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        destinations = {d["id"]: d for d in workspace.list_destinations(self.engine)}
        counts = queries.status_counts(self.engine)
        finished = CounterMetricFamily(
            "switchboard_delivery_jobs", "Deliveries finished, by destination and outcome",
            labels=["destination_id", "slug", "status"])
        pending = GaugeMetricFamily(
            "switchboard_delivery_pending", "Deliveries waiting (queued or retrying), by destination",
            labels=["destination_id", "slug", "status"])
        latency = GaugeMetricFamily(
            "switchboard_delivery_latency_seconds", "Receipt-to-delivery latency over the last 24 h",
            labels=["destination_id", "slug", "quantile"])
        redelivered = CounterMetricFamily(
            "switchboard_delivery_redelivered_after_takeover",
            "Deliveries of jobs taken over from a worker that died or whose lease ran out (possible duplicates)",
            labels=["destination_id", "slug"])
        again = queries.redelivered_counts(self.engine)
        since = store.utcnow() - timedelta(hours=24)
        for destination_id, by_status in sorted(counts.items()):
            slug = destinations.get(destination_id, {}).get("slug", "removed")
            labels = [str(destination_id), slug]
            for status in FINISHED:
                finished.add_metric(labels + [status], by_status[status])
            for status in store.PENDING:
                pending.add_metric(labels + [status], by_status[status])
            redelivered.add_metric(labels, again.get(destination_id, 0))
            for q, value in queries.latency_percentiles(self.engine, destination_id, since).items():
                if value is not None:
                    latency.add_metric(labels + [str(q)], value / 1000)
        return [finished, pending, latency, redelivered]


async def metrics(request: Request) -> Response:
    config = request.app.state.config
    token = bearer_token(request)
    allowed = bool(config.metrics_token) and hmac.compare_digest(token.encode(), config.metrics_token.encode())
    if not allowed and not await is_admin(request):
        raise ApiError(401, "unauthorized",
                       "Send Authorization: Bearer <SWITCHBOARD_METRICS_TOKEN> or an admin token",
                       headers={"WWW-Authenticate": 'Bearer realm="switchboard-metrics"'})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeliveryCollector(request.app.state.engine))
    # Other planes' database-backed families (the collector's refused events): planes don't
    # import each other, so they leave their collectors on app.state.
    for collector in getattr(request.app.state, "metrics_collectors", []):
        registry.register(collector)
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def routes(config) -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]

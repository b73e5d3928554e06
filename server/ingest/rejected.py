"""Where refused batch items show up: ``GET /api/v1/sources/{id}/rejected-events`` (admin API)
and the ``switchboard_collector_rejected_events_total`` family of ``/metrics``.

Both read server/store/rejections.py — the counts and small records the collector's writer
keeps — from the database, so every collector process's refusals are included.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.auth import admin_endpoint
from server.errors import ApiError, json_response
from server.store import rejections, workspace


class RejectedEventsCollector:
    """Prometheus collector: refused events so far, by source and reason."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        family = CounterMetricFamily(
            "switchboard_collector_rejected_events",
            "Events refused one by one inside an accepted batch (e.g. over 32 KB), by source and reason",
            labels=["source_id", "reason"])
        for (source_id, reason), count in sorted(rejections.counts(self.engine).items()):
            family.add_metric([str(source_id), reason], count)
        return [family]


def summary(engine, source_id: int, limit: int = 50) -> dict:
    """Counts by reason and the newest records of one source (the API and the debugger page)."""
    counts = {reason: n for (_, reason), n in rejections.counts(engine, source_id).items()}
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "kept": rejections.KEEP,
        "events": [rejections.as_json(r) for r in rejections.recent(engine, source_id, limit)],
    }


@admin_endpoint
async def rejected_events(request: Request) -> Response:
    """A source's refused events: counts by reason and the newest records (limit ≤ 200)."""
    engine = request.app.state.engine
    source_id = request.path_params["source_id"]
    raw = request.query_params.get("limit") or "50"
    if not raw.isdigit() or not 1 <= int(raw) <= rejections.KEEP:
        raise ApiError(400, "invalid_parameter", f"limit must be a whole number from 1 to {rejections.KEEP}",
                       field="limit")
    try:
        await run_in_threadpool(workspace.get_source, engine, source_id)
    except workspace.NotFound:
        raise ApiError(404, "not_found", f"No source {source_id}") from None
    return json_response(await run_in_threadpool(summary, engine, source_id, int(raw)))


def routes() -> list[Route]:
    return [Route("/api/v1/sources/{source_id:int}/rejected-events", rejected_events, methods=["GET"])]

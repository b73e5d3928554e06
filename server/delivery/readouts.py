"""What the web app shows of delivery (its declared read-outs, exported by name from
``server.delivery``): a destination's overview, replaying its dead letters, one event's jobs, and
the Event Tester's one-off send. Everything returned is JSON-ready and free of secrets; the
queries live in the store (``server/store/delivery.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from server.catalog import Manifest, effective_settings
from server.delivery import router
from server.delivery.masking import masked
from server.delivery.sender import Sender
from server.delivery.stats import destination_stats
from server.store import delivery as store
from server.store import delivery_stats, governance

RECENT_FAILURES = 10
DEAD_LETTERS_SHOWN = 50


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def latency_series(engine, destination_id: int, now=None) -> list[dict[str, Any]]:
    """24 hourly buckets, oldest first: {hour, p50 (ms, None when nothing was delivered), count}."""
    now = now or store.utcnow()
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    by_hour = delivery_stats.hourly_latency(engine, destination_id, first)
    points = []
    for i in range(24):
        hour = first + timedelta(hours=i)
        values = sorted(by_hour.get(hour, []))
        points.append({"hour": hour.isoformat(), "count": len(values),
                       "p50": values[(len(values) - 1) // 2] if values else None})
    return points


def _overview(engine, manifest: Manifest, destination: dict[str, Any]) -> dict[str, Any]:
    stats = destination_stats(engine, destination)
    dead = store.list_dead(engine, destination["id"], limit=DEAD_LETTERS_SHOWN)
    return masked({
        "counts": {k: stats[k] for k in ("delivered", "retrying", "queued", "dead", "skipped")},
        "latency_ms": stats["latency_ms"],
        "series": stats["series"]["points"],
        "latency_series": latency_series(engine, destination["id"]),
        "last_error": stats["last_error"],
        "recent_failures": [
            {"at": _iso(r["at"]), "job_id": r["job_id"], "outcome": r["outcome"], "status": r["status"],
             "error": r["error"], "response": r["response"], "latency_ms": r["latency_ms"]}
            for r in store.recent_failures(engine, destination["id"], RECENT_FAILURES)
        ],
        "dead_total": store.count_dead(engine, destination["id"]),
        "dead_letters": [
            {"id": j["id"], "type": j["event_type"], "message_id": j["message_id"],
             "received_at": _iso(j["received_at"]), "dead_at": _iso(j["finished_at"]), "attempts": j["attempts"],
             "last_status": j["last_status"], "last_error": j["last_error"]}
            for j in dead
        ],
    }, manifest, destination)


async def delivery_overview(app, destination: dict[str, Any]) -> dict[str, Any]:
    """Counts, 24 h hourly series, p50/p99, recent failures and dead letters (secrets masked)."""
    manifest = app.state.catalog.get(destination["slug"])
    return await run_in_threadpool(_overview, app.state.engine, manifest, destination)


def _dead_letter(engine, manifest: Manifest, destination: dict[str, Any], job_id: int) -> dict[str, Any] | None:
    job = store.get_job(engine, job_id)
    if job is None or job["destination_id"] != destination["id"]:
        return None
    attempts = [{"at": _iso(a["at"]), "outcome": a["outcome"], "status": a["status"], "error": a["error"],
                 "latency_ms": a["latency_ms"], "response": a["response"],
                 "request": orjson.loads(a["request"]) if a["request"] else None} for a in job["attempts_log"]]
    detail = {
        "id": job["id"], "status": job["status"], "type": job["event_type"], "message_id": job["message_id"],
        "received_at": _iso(job["received_at"]), "finished_at": _iso(job["finished_at"]),
        "attempts": job["attempts"], "last_status": job["last_status"], "last_error": job["last_error"],
        "event": orjson.loads(job["payload"]) if job["payload"] else None,
        "request": attempts[-1]["request"] if attempts else None,
        "response": {"status": attempts[-1]["status"], "body": attempts[-1]["response"]} if attempts else None,
        "attempts_log": attempts,
    }
    return masked(detail, manifest, destination)


async def dead_letter_detail(app, manifest: Manifest, destination: dict[str, Any], job_id: int) -> dict[str, Any] | None:
    """One delivery job of the destination (a dead letter, or one replayed since): the event, the
    last request and response, the error and every attempt, secrets masked. None if not its job."""
    return await run_in_threadpool(_dead_letter, app.state.engine, manifest, destination, job_id)


async def replay_dead_letters(app, destination_id: int, *, actor: str) -> int:
    """Queue every dead letter again; recorded like the API's replay (governance and audit)."""
    engine = app.state.engine

    def run() -> int:
        count = store.replay(engine, destination_id)
        governance.record(engine, actor=actor, action="replay.dead_letters", subject=f"destination:{destination_id}",
                          details={"since": None, "until": None, "ids": None}, counts={"replayed": count})
        return count

    return await run_in_threadpool(run)


def event_deliveries(engine, event_id: int) -> dict[int, dict[str, Any]]:
    """destination id → the delivery job of one event (status, attempts, last error)."""
    return {r["destination_id"]: {"status": r["status"], "attempts": r["attempts"], "last_status": r["last_status"],
                                  "last_error": r["last_error"]} for r in store.jobs_of_event(engine, event_id)}


async def send_sample(manifest: Manifest, destination: dict[str, Any], event: dict[str, Any], *,
                      allow_private_egress: bool = False) -> dict[str, Any]:
    """Translate and send ``event`` to one destination now, as delivery would (not logged, not
    retried): {"event", "exchanges": [{"request", "status", "response", "error", "outcome",
    "latency_ms"}], "error", "outcome"}.

    The egress rules apply as in delivery (``SWITCHBOARD_ALLOW_PRIVATE_EGRESS``): a URL that
    resolves to an internal address is refused before connecting, and the page says why."""
    call = event["type"]
    result: dict[str, Any] = {"type": call, "event": event, "exchanges": [], "error": None, "outcome": None}
    module = router.translator(manifest.slug)
    if module is None:
        result["error"] = f"{manifest.name} has no cloud-mode translator, so there is nothing to send."
        return result
    settings = effective_settings(manifest, destination["settings"], "cloud")
    try:
        requests = module.translate(event, settings)
    except Exception as exc:  # a missing or bad setting: say so, like delivery would
        result["error"] = f"Could not build the request: {type(exc).__name__}: {exc}"
        return result
    if not requests:
        result["error"] = f"{manifest.name} sends nothing for a {call} call with these settings."
        return result
    try:
        sender = Sender(allow_private_egress=allow_private_egress)
    except ValueError as exc:  # an unusable proxy in the environment (HTTPS_PROXY=socks5://…)
        result["error"] = f"Cannot send from this server: {exc}"
        return result
    try:
        outcome = await sender.perform(requests)
    finally:
        await sender.aclose()
    result["outcome"] = outcome.outcome
    result["exchanges"] = [
        {"request": a.request, "status": a.status, "response": a.response, "error": a.error,
         "outcome": a.outcome, "latency_ms": a.latency_ms}
        for a in outcome.attempts
    ]
    return result

"""What the web app shows from the other planes (bundle, delivery, warehouse), in one place.

Each function imports its plane lazily and returns ``None`` when that plane is not installed
(or not running in this app); the page then says the feature is unavailable instead of showing
invented numbers. Everything returned is JSON-ready and free of secrets.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from starlette.concurrency import run_in_threadpool

from server.config import Config

RECENT_FAILURES = 10
DEAD_LETTERS_SHOWN = 50


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


# ---------------------------------------------------------------- bundle


def snippet(config: Config, write_key: str) -> str:
    """The snippet a site pastes into its <head>."""
    module = _module("server.cdn.snippet")
    if module is None:
        return f'<script src="{config.origin}/snippet/{write_key}.js"></script>'
    return "<script>\n" + module.render_snippet(config, write_key) + "\n</script>"


async def bundle_info(app, write_key: str) -> dict[str, Any] | None:
    """The bundle as the CDN plane serves it now (built if needed), or None without that plane."""
    cache = getattr(app.state, "bundle_cache", None)
    snippet_module = _module("server.cdn.snippet")
    if cache is None or snippet_module is None:
        return None
    entry = await cache.get(write_key)
    url = snippet_module.bundle_url(app.state.config, write_key)
    bundle = getattr(entry, "bundle", None)
    if bundle is None:  # Missing: unknown or disabled source
        return {"served": False, "reason": getattr(entry, "reason", "unknown"), "url": url}
    catalog = app.state.catalog
    return {
        "served": True,
        "url": url,
        "immutable_url": url.replace("analytics.min.js", f"analytics.{bundle.hash}.min.js"),
        "version": bundle.version,
        "size": len(bundle.body),
        "gzip_size": len(bundle.gzip),
        "brotli_size": len(bundle.br),
        "etag": bundle.etag("identity"),
        "loaders": [catalog.get(s).name if catalog.get(s) else s for s in bundle.loaders],
        "built_at": _iso(getattr(bundle, "built_at", None)),
        "version_saved_at": await run_in_threadpool(_version_saved_at, app.state.engine, write_key, bundle.version),
    }


def _version_saved_at(engine, write_key: str, version: int) -> str | None:
    from server.store import workspace

    current = workspace.public_config(engine, write_key)
    return _iso(current["version_created_at"]) if current and current["settings_version"] == version else None


# ---------------------------------------------------------------- delivery


def _delivery_store() -> ModuleType | None:
    if _module("server.delivery") is None:
        return None
    return _module("server.store.delivery")


def _recent_failures(engine, destination_id: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from server.store.engine import read_only

    store = _delivery_store()
    table = store.delivery_attempts
    with read_only(engine) as conn:
        rows = conn.execute(
            select(table).where(table.c.destination_id == destination_id, table.c.outcome != "delivered")
            .order_by(table.c.id.desc()).limit(RECENT_FAILURES)
        ).all()
    return [
        {"at": _iso(r.at), "job_id": r.job_id, "outcome": r.outcome, "status": r.status, "error": r.error,
         "response": r.response, "latency_ms": r.latency_ms}
        for r in rows
    ]


def _overview(engine, destination: dict[str, Any]) -> dict[str, Any]:
    stats = importlib.import_module("server.delivery.stats").destination_stats(engine, destination)
    store = _delivery_store()
    dead = store.list_dead(engine, destination["id"], limit=DEAD_LETTERS_SHOWN)
    return {
        "counts": {k: stats[k] for k in ("delivered", "retrying", "queued", "dead", "skipped")},
        "latency_ms": stats["latency_ms"],
        "series": stats["series"]["points"],
        "last_error": stats["last_error"],
        "recent_failures": _recent_failures(engine, destination["id"]),
        "dead_total": store.count_dead(engine, destination["id"]),
        "dead_letters": [
            {"id": j["id"], "type": j["event_type"], "message_id": j["message_id"],
             "received_at": _iso(j["received_at"]), "dead_at": _iso(j["finished_at"]), "attempts": j["attempts"],
             "last_status": j["last_status"], "last_error": j["last_error"]}
            for j in dead
        ],
    }


async def delivery_overview(app, destination: dict[str, Any]) -> dict[str, Any] | None:
    """Counts, 24 h hourly series, p50/p99, recent failures and dead letters; None without delivery."""
    if _delivery_store() is None:
        return None
    return await run_in_threadpool(_overview, app.state.engine, destination)


async def replay_dead_letters(app, destination_id: int) -> int | None:
    store = _delivery_store()
    if store is None:
        return None
    return await run_in_threadpool(lambda: store.replay(app.state.engine, destination_id))


def event_deliveries(engine, event_id: int) -> dict[int, dict[str, Any]] | None:
    """destination id → the delivery job of one event (status, attempts, last error), or None."""
    store = _delivery_store()
    if store is None:
        return None
    from sqlalchemy import select

    from server.store.engine import read_only

    jobs = store.delivery_jobs
    with read_only(engine) as conn:
        rows = conn.execute(
            select(jobs.c.destination_id, jobs.c.status, jobs.c.attempts, jobs.c.last_status, jobs.c.last_error)
            .where(jobs.c.event_id == event_id)
        ).all()
    return {r.destination_id: {"status": r.status, "attempts": r.attempts, "last_status": r.last_status,
                               "last_error": r.last_error} for r in rows}


def tester_available() -> bool:
    return _module("server.delivery") is not None and _module("server.delivery.sender") is not None


# ---------------------------------------------------------------- warehouse


async def warehouse_syncs(app, destination_id: int) -> dict[str, Any] | None:
    if _module("server.warehouse") is None:
        return None
    store = _module("server.store.warehouse")
    engine = app.state.engine

    def load():
        return store.list_syncs(engine, destination_id, 20), store.get_cursor(engine, destination_id)

    syncs, cursor = await run_in_threadpool(load)
    return {"cursor": cursor, "syncs": [sync_json(s) for s in syncs]}


def sync_json(sync: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": sync["id"], "trigger": sync["trigger"], "started_at": _iso(sync["started_at"]),
        "finished_at": _iso(sync["finished_at"]),
        "status": "running" if sync["finished_at"] is None else ("failed" if sync["error"] else "succeeded"),
        "events": sync["events"], "rows": sync["rows"], "notices": sync["notices"], "error": sync["error"],
    }


async def sync_now(app, destination_id: int) -> dict[str, Any] | None:
    module = _module("server.warehouse.sync")
    if module is None:
        return None
    state = app.state
    sync = await run_in_threadpool(
        lambda: module.sync_destination(state.engine, state.catalog, state.config, destination_id, trigger="web")
    )
    return sync_json(sync)

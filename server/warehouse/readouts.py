"""What the web app shows of the warehouse plane (its read-outs, exported by name from
``server.warehouse``): a warehouse destination's recent syncs, cursor and skipped events, and
"sync now" (optionally re-loading the skipped events first)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from server.store import warehouse as store
from server.store import warehouse_skipped
from server.warehouse.sync import sync_on_request


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


async def warehouse_syncs(app, destination_id: int) -> dict[str, Any]:
    engine = app.state.engine

    def load():
        return (store.list_syncs(engine, destination_id, 20), store.get_cursor(engine, destination_id),
                warehouse_skipped.list_skipped(engine, destination_id, 20))

    syncs, cursor, (skipped, skipped_total) = await run_in_threadpool(load)
    return {"cursor": cursor, "syncs": [sync_json(s) for s in syncs],
            "skipped": [dict(e, skipped_at=_iso(e["skipped_at"])) for e in skipped], "skipped_total": skipped_total}


def sync_json(sync: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": sync["id"], "trigger": sync["trigger"], "started_at": _iso(sync["started_at"]),
        "finished_at": _iso(sync["finished_at"]),
        "status": "running" if sync["finished_at"] is None else ("failed" if sync["error"] else "succeeded"),
        "events": sync["events"], "rows": sync["rows"], "notices": sync["notices"], "error": sync["error"],
        "skipped": sync["skipped"],
    }


async def sync_now(app, destination_id: int, *, actor: str, reload: bool = False) -> dict[str, Any]:
    state = app.state
    sync = await run_in_threadpool(
        lambda: sync_on_request(state.engine, state.catalog, state.config, destination_id, trigger="web", actor=actor,
                                reload=reload)
    )
    return sync_json(sync)

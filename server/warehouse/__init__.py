"""The warehouse plane: Segment's warehouse schema, loaded into SQLite or PostgreSQL.

Modules: ``snakecase`` (go-snakecase port) · ``naming`` (flattening, reserved words) ·
``types`` (inference and casts) · ``transform`` (event → rows) · ``schema`` (columns per
batch) · ``row_width`` (PostgreSQL's row size limit) · ``loader`` (the two targets) ·
``indexes`` (the loader's index and key names) · ``batch`` (one load) · ``data_errors`` and
``isolation`` (an event the warehouse refuses is skipped, the rest loads) · ``reload`` (skipped
events loaded again) · ``report`` (notices) · ``sync`` (cursor, history, scheduler) · ``api`` ·
``commands``. See docs/warehouse.md.

The scheduler runs inside ``switchboard serve`` (unless ``SWITCHBOARD_DELIVERY_WORKERS`` is off)
and inside ``switchboard worker``.

The door: ``routes``, ``startup``, ``shutdown``, ``add_commands`` and the web app's read-outs
(``warehouse_syncs``, ``sync_now``, ``sync_json``) and ``erase_users`` (a delete regulation's
warehouse step, handed to the privacy plane by the assemblers).
"""

from __future__ import annotations

import asyncio
import contextlib

from server.warehouse import api
from server.warehouse.commands import add_commands
from server.warehouse.erase import erase_users
from server.warehouse.readouts import sync_json, sync_now, warehouse_syncs

__all__ = ["routes", "startup", "shutdown", "add_commands", "warehouse_syncs", "sync_now", "sync_json", "erase_users"]


def routes(config):
    return api.routes(config)


async def startup(app) -> None:
    app.state.warehouse_stop = None
    if not app.state.config.delivery_workers:
        return
    from server.warehouse.sync import run_loop

    stop = asyncio.Event()
    app.state.warehouse_stop = stop
    app.state.warehouse_task = asyncio.create_task(
        run_loop(app.state.engine, app.state.catalog, app.state.config, stop), name="warehouse-sync"
    )


async def shutdown(app) -> None:
    stop = getattr(app.state, "warehouse_stop", None)
    if stop is None:
        return
    stop.set()
    task = app.state.warehouse_task
    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
        # A running sync finishes its current table; give it a moment, then stop waiting.
        await asyncio.wait_for(asyncio.shield(task), 30)

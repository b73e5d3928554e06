"""``switchboard worker``: the background planes without the HTTP server.

It runs the very startup and shutdown hooks ``switchboard serve`` runs (``WORKER_PLANES``): the
change bus listener (``scaleout``: other processes' appends wake the delivery workers at once
on PostgreSQL; polling covers SQLite and gaps), the delivery service, the warehouse
scheduler and the alert evaluator. The planes see a host with the same ``state`` an app gives them (config, engine,
catalog), plus the worker's ``delivery_options``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
from types import SimpleNamespace

from server import alerts, delivery, privacy, scaleout, warehouse
from server.cli_access import OPERATOR, needs
from server.cli_support import CliError, catalog, config, engine

WORKER_PLANES = [scaleout, delivery, warehouse, privacy, alerts]
log = logging.getLogger("switchboard")


def add_commands(sub) -> None:
    worker = sub.add_parser("worker", help="run cloud-mode delivery workers without the HTTP server")
    worker.add_argument("--concurrency", type=int, default=64, help="requests in flight per destination (default 64)")
    worker.add_argument("--lease-seconds", type=float, default=60.0,
                        help="how long a claimed job stays ours before another worker may take it (default 60)")
    worker.set_defaults(func=cmd_worker)
    needs(OPERATOR, worker)  # runs on the database; refuses a token


def cmd_worker(args: argparse.Namespace) -> None:
    if args.concurrency < 1 or args.lease_seconds <= 0:
        raise CliError("--concurrency must be at least 1 and --lease-seconds positive")
    settings = config()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = SimpleNamespace(
        config=dataclasses.replace(settings, delivery_workers=True), engine=engine(settings), catalog=catalog(),
        delivery_options={"concurrency": args.concurrency, "lease_seconds": args.lease_seconds},
        erasers=[warehouse.erase_users],
    )
    try:  # the event loop `switchboard serve` gets from uvicorn: cheaper per request
        import uvloop
    except ImportError:
        uvloop = None
    (uvloop.run if uvloop else asyncio.run)(run(SimpleNamespace(state=state)))


async def run(host) -> None:
    started = []
    try:
        for plane in WORKER_PLANES:
            await plane.startup(host)
            started.append(plane)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        url = host.state.config.database_url.split("@")[-1]
        print(f"switchboard worker {host.state.delivery.owner} delivering from {url}", flush=True)
        await stop.wait()
    finally:
        # Graceful: stop claiming, let in-flight sends finish, record results, release the rest;
        # a running warehouse load finishes its current table.
        for plane in reversed(started):
            try:
                await plane.shutdown(host)
            except Exception:
                log.exception("shutdown of %s failed", plane.__name__)
    print("switchboard worker stopped", flush=True)

"""``switchboard worker`` and ``switchboard replay`` (added to the CLI by ``add_commands``)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys

from server.cli import CliError, _catalog, _config, _engine


def add_commands(sub) -> None:
    worker = sub.add_parser("worker", help="run cloud-mode delivery workers without the HTTP server")
    worker.add_argument("--concurrency", type=int, default=64, help="requests in flight per destination (default 64)")
    worker.add_argument("--lease-seconds", type=float, default=60.0,
                        help="how long a claimed job stays ours before another worker may take it (default 60)")
    worker.set_defaults(func=cmd_worker)

    replay = sub.add_parser("replay", help="deliver a destination's dead letters again, with its current settings")
    replay.add_argument("--destination", required=True, type=int, help="destination id")
    replay.add_argument("--since", help="only events received at or after this ISO time")
    replay.add_argument("--until", help="only events received before this ISO time")
    replay.set_defaults(func=cmd_replay)


def _one_line_errors(command):
    """Print a CliError as one line and exit 2 here: under ``python -m server.cli`` the CLI's own
    handler catches ``__main__.CliError``, not the ``server.cli.CliError`` these helpers raise."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> None:
        try:
            command(args)
        except CliError as exc:
            print(f"switchboard: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return run


@_one_line_errors
def cmd_worker(args: argparse.Namespace) -> None:
    if args.concurrency < 1 or args.lease_seconds <= 0:
        raise CliError("--concurrency must be at least 1 and --lease-seconds positive")
    config = _config()
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = _engine(config)
    catalog = _catalog()
    try:  # the event loop `switchboard serve` gets from uvicorn: cheaper per request
        import uvloop
    except ImportError:
        uvloop = None
    (uvloop.run if uvloop else asyncio.run)(_run_worker(config, engine, catalog, args))


async def _run_worker(config, engine, catalog, args) -> None:
    from server.delivery.worker import DeliveryService
    from server.store.notify import EVENTS_CHANNEL, NotifyListener

    service = await DeliveryService(
        engine, catalog, retry_window=config.retry_window, concurrency=args.concurrency,
        lease_seconds=args.lease_seconds, allow_private_egress=config.allow_private_egress,
    ).start()
    # Other processes' appends arrive by NOTIFY on PostgreSQL; polling covers SQLite and gaps.
    listener = NotifyListener.for_engine(engine, (EVENTS_CHANNEL,))
    listener.subscribe(EVENTS_CHANNEL, service.wake)
    listener.on_reconnect(service.wake)
    listener.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    warehouse = _warehouse_loop(engine, catalog, config)
    print(f"switchboard worker {service.owner} delivering from {config.database_url.split('@')[-1]}", flush=True)
    await stop.wait()
    # Graceful: stop claiming, let in-flight sends finish, record results, release the rest.
    await service.stop()
    if warehouse is not None:
        warehouse[0].set()  # a running load finishes its current table
        await asyncio.wait([warehouse[1]], timeout=30)
    listener.stop()
    print("switchboard worker stopped", flush=True)


def _warehouse_loop(engine, catalog, config):
    """Workers also run the warehouse scheduler, so that edge servers (`serve --role edge`) plus
    workers load warehouses too; its per-warehouse lock keeps it to one loader at a time.
    (Added by the scale-out work.) Returns (stop event, task), or None without the plane."""
    try:
        from server.warehouse.sync import run_loop
    except ImportError:
        return None
    stop = asyncio.Event()
    return stop, asyncio.create_task(run_loop(engine, catalog, config, stop), name="warehouse-sync")


@_one_line_errors
def cmd_replay(args: argparse.Namespace) -> None:
    from server.errors import ApiError
    from server.delivery.api import parse_when
    from server.store import delivery as store
    from server.store import workspace

    try:
        since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until")
    except ApiError as exc:
        raise CliError(exc.message) from None
    engine = _engine(_config())
    try:
        destination = workspace.get_destination(engine, args.destination)
    except workspace.NotFound:
        raise CliError(f"no destination {args.destination} (see `switchboard destinations list`)") from None
    count = store.replay(engine, destination["id"], since=since, until=until)
    print(f"queued {count} dead letter(s) of destination {destination['id']} ({destination['slug']}) for delivery")

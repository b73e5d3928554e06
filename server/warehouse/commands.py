"""``switchboard warehouse sync|syncs|skipped DESTINATION_ID`` and ``switchboard warehouse run``.

``run`` is the scheduler on its own, for installations whose servers run as edges
(``SWITCHBOARD_ROLE=edge``) and load warehouses elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from server.cli_access import OPERATOR, needs
from server.cli_support import CliError
from server.cli_support import catalog as _catalog
from server.cli_support import config as _config
from server.cli_support import engine as _engine


def _fail(message: str) -> None:
    raise CliError(message)


def _print_sync(sync: dict[str, Any]) -> None:
    rows = ", ".join(f"{t}={n}" for t, n in sorted(sync["rows"].items())) or "no rows"
    state = f"failed: {sync['error']}" if sync["error"] else "ok"
    skipped = f"; {sync['skipped']} skipped" if sync["skipped"] else ""
    print(f"sync {sync['id']} ({sync['trigger']}) {sync['started_at']:%Y-%m-%d %H:%M:%S} "
          f"{state}; {sync['events']} events{skipped}; {rows}")
    for notice in sync["notices"]:
        print(f"  notice: {notice}")


def cmd_sync(args: argparse.Namespace) -> None:
    from server.store import workspace
    from server.cli_access import actor
    from server.warehouse.sync import NotAWarehouse, sync_on_request

    config = _config()
    engine = _engine(config)
    try:
        sync = sync_on_request(engine, _catalog(), config, args.destination_id, trigger="cli", actor=actor(),
                               reload=args.reload_skipped)
    except workspace.NotFound as exc:
        _fail(f"no {exc} (see `switchboard destinations list SOURCE`)")
    except NotAWarehouse as exc:
        _fail(str(exc))
    _print_sync(sync)
    if sync["error"]:
        sys.exit(1)


def _engine_with_destination(destination_id: int):
    """The store's engine, once the destination is known to exist (else the CLI's error)."""
    from server.store import workspace

    engine = _engine(_config())
    try:
        workspace.get_destination(engine, destination_id)
    except workspace.NotFound as exc:
        _fail(f"no {exc}")
    return engine


def cmd_syncs(args: argparse.Namespace) -> None:
    from server.store import warehouse as store

    engine = _engine_with_destination(args.destination_id)
    syncs = store.list_syncs(engine, args.destination_id, args.limit)
    if args.json:
        print(json.dumps(syncs, default=str))
        return
    for sync in syncs:
        _print_sync(sync)


def cmd_skipped(args: argparse.Namespace) -> None:
    from server.store import warehouse_skipped

    engine = _engine_with_destination(args.destination_id)
    entries, total = warehouse_skipped.list_skipped(engine, args.destination_id, args.limit)
    if args.json:
        print(json.dumps({"skipped": entries, "total": total}, default=str))
        return
    for e in entries:
        where = e["table"] or "(no rows)"
        print(f"event #{e['event_id']} {e['message_id']} {where}: {e['error']} "
              f"(sync {e['sync_id']}, {e['skipped_at']:%Y-%m-%d %H:%M:%S})")
    if not total:
        print("no skipped events: the warehouse took every event")
        return
    print(f"{total} skipped; `switchboard warehouse sync {args.destination_id} --reload-skipped` loads them "
          f"again once the cause is fixed")


def cmd_run(args: argparse.Namespace) -> None:
    import asyncio
    import logging

    from server.warehouse.sync import run_loop

    config = _config()
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = _engine(config)
    print("warehouse scheduler running; Ctrl-C stops it", flush=True)
    asyncio.run(run_loop(engine, _catalog(), config, asyncio.Event()))


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("warehouse", help="warehouse destinations: sync now, sync history")
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser), metavar="ACTION")
    sync = actions.add_parser("sync", help="load every waiting event into a warehouse destination now")
    sync.add_argument("destination_id", type=int, help="the warehouse destination's id")
    sync.add_argument("--reload-skipped", action="store_true",
                      help="first load the events the warehouse refused before again (see `warehouse skipped`)")
    sync.set_defaults(func=cmd_sync)
    history = actions.add_parser("syncs", help="a warehouse destination's recent syncs, newest first")
    history.add_argument("destination_id", type=int)
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(func=cmd_syncs)
    skipped = actions.add_parser("skipped", help="events a warehouse destination refused and skipped, newest first")
    skipped.add_argument("destination_id", type=int)
    skipped.add_argument("--limit", type=int, default=50)
    skipped.add_argument("--json", action="store_true", help="print JSON")
    skipped.set_defaults(func=cmd_skipped)
    run = actions.add_parser("run", help="run the warehouse scheduler alone (every warehouse, on its interval)")
    run.set_defaults(func=cmd_run)
    # With a token (checked in the CLI's main): history is a read, a sync a change; the scheduler
    # is a long-running process on the database, the operator's.
    needs("viewer", history)
    needs("viewer", skipped)
    needs("editor", sync)
    needs(OPERATOR, run)

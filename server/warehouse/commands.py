"""``switchboard warehouse sync DESTINATION_ID`` and ``switchboard warehouse syncs DESTINATION_ID``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _print_sync(sync: dict[str, Any]) -> None:
    rows = ", ".join(f"{t}={n}" for t, n in sorted(sync["rows"].items())) or "no rows"
    state = f"failed: {sync['error']}" if sync["error"] else "ok"
    print(f"sync {sync['id']} ({sync['trigger']}) {sync['started_at']:%Y-%m-%d %H:%M:%S} "
          f"{state}; {sync['events']} events; {rows}")
    for notice in sync["notices"]:
        print(f"  notice: {notice}")


def cmd_sync(args: argparse.Namespace) -> None:
    from server.cli import CliError, _catalog, _config, _engine
    from server.store import workspace
    from server.warehouse.sync import NotAWarehouse, sync_destination

    config = _config()
    engine = _engine(config)
    try:
        sync = sync_destination(engine, _catalog(), config, args.destination_id, trigger="cli")
    except (workspace.NotFound, NotAWarehouse) as exc:
        raise CliError(str(exc)) from None
    _print_sync(sync)
    if sync["error"]:
        sys.exit(1)


def cmd_syncs(args: argparse.Namespace) -> None:
    from server.cli import CliError, _config, _engine
    from server.store import warehouse as store
    from server.store import workspace

    engine = _engine(_config())
    try:
        workspace.get_destination(engine, args.destination_id)
    except workspace.NotFound as exc:
        raise CliError(str(exc)) from None
    syncs = store.list_syncs(engine, args.destination_id, args.limit)
    if args.json:
        print(json.dumps(syncs, default=str))
        return
    for sync in syncs:
        _print_sync(sync)


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("warehouse", help="warehouse destinations: sync now, sync history")
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser), metavar="ACTION")
    sync = actions.add_parser("sync", help="load every waiting event into a warehouse destination now")
    sync.add_argument("destination_id", type=int, help="the warehouse destination's id")
    sync.set_defaults(func=cmd_sync)
    history = actions.add_parser("syncs", help="a warehouse destination's recent syncs, newest first")
    history.add_argument("destination_id", type=int)
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(func=cmd_syncs)

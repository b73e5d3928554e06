"""``switchboard replay`` (added to the CLI by ``add_commands``; ``switchboard worker`` is in
server/worker.py, which runs every background plane)."""

from __future__ import annotations

import argparse

from server.cli_access import actor, needs
from server.cli_support import CliError
from server.cli_support import catalog as _catalog
from server.cli_support import config as _config
from server.cli_support import engine as _engine


def add_commands(sub) -> None:
    replay = sub.add_parser(
        "replay", help="deliver a destination's dead letters again, with its current settings; with --history, "
        "every stored event of a time window (history replay, at SWITCHBOARD_REPLAY_RATE events/s)")
    replay.add_argument("--destination", required=True, type=int, help="destination id")
    replay.add_argument("--since", help="only events received at or after this ISO time (required with --history)")
    replay.add_argument("--until", help="only events received before this ISO time")
    replay.add_argument("--history", action="store_true",
                        help="replay the stored events of the window (not only dead letters) to this destination")
    replay.add_argument("--type", action="append", dest="types", metavar="TYPE",
                        help="with --history: only this call type (track, page, identify…); repeatable")
    replay.add_argument("--event", action="append", dest="events", metavar="NAME",
                        help="with --history: only track events of this name; repeatable")
    replay.set_defaults(func=cmd_replay)
    needs("editor", replay)  # with a token (checked in the CLI's main): a change, as POST …/replay


def cmd_replay(args: argparse.Namespace) -> None:
    from server.errors import ApiError
    from server.delivery.api import parse_when
    from server.store import delivery as store
    from server.store import governance, workspace

    try:
        since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until")
    except ApiError as exc:
        raise CliError(exc.message) from None
    engine = _engine(_config())
    try:
        destination = workspace.get_destination(engine, args.destination)
    except workspace.NotFound:
        raise CliError(f"no destination {args.destination} (see `switchboard destinations list`)") from None
    if args.history:
        from server.delivery.history import start_replay

        conf = _config()
        try:
            result = start_replay(engine, _catalog(), destination["id"], since=since, until=until,
                                  types=args.types, events=args.events, rate=conf.replay_rate, actor=actor())
        except ApiError as exc:
            raise CliError(exc.message) from None
        rest = "; the delivery workers queue the rest as it goes" if result["state"] == "queuing" else ""
        print(f"queued {result['queued']} stored event(s) for destination {destination['id']} "
              f"({destination['slug']}) as replay {result['replay_id']}, at up to {conf.replay_rate:g} events/s{rest}")
        return
    if args.types or args.events:
        raise CliError("--type and --event go with --history")
    count = store.replay(engine, destination["id"], since=since, until=until)
    governance.record(engine, actor=actor(), action="replay.dead_letters", subject=f"destination:{destination['id']}",
                      details={"since": args.since, "until": args.until}, counts={"replayed": count})
    print(f"queued {count} dead letter(s) of destination {destination['id']} ({destination['slug']}) for delivery")

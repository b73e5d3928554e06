"""``switchboard regulate create|list|show``: regulations from the command line (as the
REST API, same validation), for operators working on the server itself."""

from __future__ import annotations

import argparse
import json

from server.cli_access import actor, needs
from server.cli_support import CliError
from server.cli_support import config as _config
from server.cli_support import engine as _engine


def _print(regulation: dict) -> None:
    counts = ", ".join(f"{k}={v}" for k, v in sorted(regulation["counts"].items())) or "-"
    sources = ", ".join(map(str, regulation["source_ids"])) if regulation["source_ids"] else "all sources"
    print(f"regulation {regulation['id']} {regulation['type']} {regulation['status']} "
          f"({len(regulation['user_ids'])} users, {sources}) created {regulation['created_at']}; counts: {counts}")
    if regulation["error"]:
        print(f"  error: {regulation['error']}")


def cmd_create(args: argparse.Namespace) -> None:
    from server.api import regulations as service
    from server.errors import ApiError

    body: dict = {"type": args.type, "user_ids": args.user_ids}
    if args.source:
        body["source_ids"] = args.source
    try:
        created = service.create(_engine(_config()), body, actor())
    except ApiError as exc:
        raise CliError(exc.message) from None
    if args.json:
        print(json.dumps(created))
    else:
        _print(created)
        if created["status"] == "pending":
            print("  deletion runs in the background of `switchboard serve` / `switchboard worker`; "
                  f"follow it with `switchboard regulate show {created['id']}`")


def cmd_list(args: argparse.Namespace) -> None:
    from server.store import regulations

    found = regulations.list_regulations(_engine(_config()), limit=args.limit)
    if args.json:
        print(json.dumps(found, default=str))
        return
    for regulation in found:
        _print(regulation)


def cmd_show(args: argparse.Namespace) -> None:
    from server.store import regulations

    found = regulations.get(_engine(_config()), args.regulation_id)
    if found is None:
        raise CliError(f"no regulation {args.regulation_id}")
    print(json.dumps(found, indent=2)) if args.json else _print(found)


def add_commands(sub) -> None:
    regulate = sub.add_parser("regulate", help="delete or suppress users' data (regulations; see docs/privacy.md)")
    actions = regulate.add_subparsers(dest="regulate_command", required=True)
    create = actions.add_parser("create", help="create a regulation")
    create.add_argument("type", choices=["suppress", "delete", "suppress_with_delete", "unsuppress"])
    create.add_argument("user_ids", nargs="+", metavar="USER_ID", help="userIds it applies to")
    create.add_argument("--source", type=int, action="append", metavar="SOURCE_ID",
                        help="only this source (repeat for several; default every source)")
    create.add_argument("--json", action="store_true", help="print the regulation as JSON")
    create.set_defaults(func=cmd_create)
    listing = actions.add_parser("list", help="list regulations, newest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_list)
    show = actions.add_parser("show", help="one regulation's status and counts")
    show.add_argument("regulation_id", type=int)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_show)
    # With a token (checked in the CLI's main): reads need viewer, a new regulation editor.
    needs("viewer", listing, show)
    needs("editor", create)

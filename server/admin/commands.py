"""``switchboard users add|list|set-password|remove`` and ``switchboard tokens
create|list|revoke``: users, roles and tokens from the command line, for operators on the server
itself (as the REST API, same validation: ``server.api.users``). They work on the store directly,
offline, so ``users set-password`` is also the password reset when nobody can sign in. Run with
a token (``switchboard --token …``, ``server.cli_access``) they need the owner role, as in the API.

A password is read from standard input (``--password-stdin``) or generated and printed once; it
is never a command-line argument, which other users of the machine could see in ``ps``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from server.cli_access import actor, needs
from server.cli_support import CliError, Parser
from server.cli_support import config as _config
from server.cli_support import engine as _engine

ROLES = ("viewer", "editor", "owner")


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?) from standard input's first line, or a new random one."""
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError("--password-stdin: standard input gave no password")
        return line, False
    return secrets.token_urlsafe(12), True


def _service():
    from server.api import users

    return users


def cmd_users_add(args: argparse.Namespace) -> None:
    password, generated = _password(args)
    user = _service().create_user(
        _engine(_config()), {"username": args.username, "password": password, "role": args.role}, actor=actor())
    print(f"user {user['username']} ({user['role']}) created"
          + (f"; password: {password}   (shown once)" if generated else ""))


def cmd_users_list(args: argparse.Namespace) -> None:
    rows = _service().list_users(_engine(_config()))
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'USERNAME':<24} {'ROLE':<7} CREATED")
    for u in rows:
        print(f"{u['username'][:24]:<24} {u['role']:<7} {u['created']}")


def cmd_users_set_password(args: argparse.Namespace) -> None:
    password, generated = _password(args)
    _service().update_user(_engine(_config()), args.username, {"password": password}, actor=actor())
    print(f"password of {args.username} set" + (f": {password}   (shown once)" if generated else ""))


def cmd_users_set_role(args: argparse.Namespace) -> None:
    user = _service().update_user(_engine(_config()), args.username, {"role": args.role}, actor=actor())
    print(f"{user['username']} is now {user['role']}")


def cmd_users_remove(args: argparse.Namespace) -> None:
    _service().delete_user(_engine(_config()), args.username, actor=actor())
    print(f"user {args.username} removed (signed out everywhere)")


def cmd_tokens_create(args: argparse.Namespace) -> None:
    made = _service().create_token(_engine(_config()), {"name": args.name, "role": args.role}, actor=actor())
    print(made["token"])


def cmd_tokens_list(args: argparse.Namespace) -> None:
    rows = _service().list_tokens(_engine(_config()))
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'ID':>4}  {'NAME':<24} {'ROLE':<7} {'CREATED':<32} LAST USED")
    for t in rows:
        print(f"{t['id']:>4}  {t['name'][:24]:<24} {t['role']:<7} {t['created']:<32} {t['last_used'] or '-'}")


def cmd_tokens_revoke(args: argparse.Namespace) -> None:
    _service().revoke_token(_engine(_config()), args.id, actor=actor())
    print(f"token {args.id} revoked")


def _password_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (else one is generated and printed once)")


def add_commands(sub) -> None:
    users = sub.add_parser("users", help="web app users and their roles (owner, editor, viewer)").add_subparsers(
        dest="action", required=True, parser_class=Parser, metavar="ACTION")
    add = users.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="viewer", help="what the user may do (default: viewer)")
    _password_flag(add)
    add.set_defaults(func=cmd_users_add)
    listing = users.add_parser("list", help="list users and roles")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_users_list)
    setpw = users.add_parser("set-password", help="set a user's password (the password reset)")
    setpw.add_argument("username")
    _password_flag(setpw)
    setpw.set_defaults(func=cmd_users_set_password)
    setrole = users.add_parser("set-role", help="change a user's role")
    setrole.add_argument("username")
    setrole.add_argument("role", choices=ROLES)
    setrole.set_defaults(func=cmd_users_set_role)
    remove = users.add_parser("remove", help="delete a user (not the only owner)")
    remove.add_argument("username")
    remove.set_defaults(func=cmd_users_remove)

    tokens = sub.add_parser("tokens", help="admin API tokens").add_subparsers(
        dest="action", required=True, parser_class=Parser, metavar="ACTION")
    tcreate = tokens.add_parser("create", help="create an admin API token and print it (shown once); the API and "
                                  "`switchboard --token` take it")
    tcreate.add_argument("--name", default="cli", help="a label for the token")
    tcreate.add_argument("--role", choices=ROLES, default="owner", help="what the token may do (default: owner)")
    tcreate.set_defaults(func=cmd_tokens_create)
    tlist = tokens.add_parser("list", help="list tokens: id, name, role, created, last used (never the token)")
    tlist.add_argument("--json", action="store_true", help="print JSON")
    tlist.set_defaults(func=cmd_tokens_list)
    revoke = tokens.add_parser("revoke", help="revoke a token by id (it answers 401 at once)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_tokens_revoke)
    # With a token, users and tokens are the owner's, as in the API (checked in the CLI's main).
    needs("owner", add, listing, setpw, setrole, remove, tcreate, tlist, revoke)

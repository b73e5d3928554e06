"""Who runs a CLI command and what they may do: ``--token`` / ``SWITCHBOARD_TOKEN``.

Why a token in a command that works on the store directly
    Whoever holds ``SWITCHBOARD_DATABASE_URL`` can do anything, token or not: the CLI without a
    token is the operator, with every right, recorded in the audit as ``cli``. A token scopes and
    names a CLI user, for scripts and people who should not act as the operator: the command runs
    with the token's role and its changes are recorded as ``token:<name>``, as over the API. It is
    a guard rail and a name on the audit, not a lock: the database URL is the real key.

The rule, in one place
    Each command declares the role it needs where its parser is made, once per module:
    ``needs("viewer", listing, show)`` — the API's rule (reads: viewer; changes: editor; users
    and tokens: owner). ``acting`` (called by ``server.cli.main`` around every command) checks it;
    no command checks a role itself. Commands that need the database itself — they start
    servers, workers or schedulers, or create it — are ``OPERATOR`` and refuse a token.
    tests/test_cli_token.py walks the parser tree and fails on a command that declares nothing.

The token is looked up as the API looks it up (``tokens.find_token``: unknown or revoked →
refused; ``last_used`` updated; ``SWITCHBOARD_ADMIN_TOKEN`` is the bootstrap owner).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import os
import sys
from typing import Iterator, Mapping, TextIO

from server.api.auth import allows
from server.cli_support import CliError
from server.cli_support import config as _config
from server.cli_support import engine as _engine
from server.store import tokens

ENV = "SWITCHBOARD_TOKEN"
OPERATOR = "operator"  # needs the database, takes no token
LEVELS = (*tokens.ROLES, OPERATOR)

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("cli_actor", default="cli")


def actor() -> str:
    """The audit's actor of the running command: ``cli`` (no token) or the token's, as the API's."""
    return _actor.get()


def needs(role: str, *parsers: argparse.ArgumentParser) -> None:
    """Declare the role these (leaf) commands need: viewer, editor, owner, or ``OPERATOR``."""
    if role not in LEVELS:
        raise ValueError(role)
    for parser in parsers:
        parser.set_defaults(needs=role, command_name=parser.prog.partition(" ")[2])


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--token", metavar="TOKEN",
                       help=f"act as this admin API token (before the command): its role limits what the command "
                            f"may do and the audit records token:NAME. An argument shows in `ps`: prefer "
                            f"{ENV}=… in the environment or --token-stdin")
    group.add_argument("--token-stdin", action="store_true",
                       help="read the token from the first line of standard input")


def token_of(args: argparse.Namespace, environ: Mapping[str, str], stdin: TextIO) -> tuple[str, str] | None:
    """(token, where it came from) — --token, --token-stdin, else SWITCHBOARD_TOKEN; None: the operator."""
    if getattr(args, "token_stdin", False):
        if getattr(args, "password_stdin", False):
            raise CliError(f"--token-stdin and --password-stdin both read standard input; give the token in {ENV}")
        line = stdin.readline().strip()
        if not line:
            raise CliError("--token-stdin: standard input gave no token")
        return line, "--token-stdin"
    if getattr(args, "token", None) is not None:
        if not args.token.strip():
            raise CliError("--token is empty (leave it out to run as the operator)")
        return args.token.strip(), "--token"
    from_env = environ.get(ENV, "").strip()  # set but empty: as if unset
    return (from_env, ENV) if from_env else None


def authorize(args: argparse.Namespace, token: str, where: str = "--token") -> str:
    """The actor ``token`` runs this command as; CliError when the token may not run it."""
    needed = getattr(args, "needs", None)
    name = getattr(args, "command_name", None) or args.command
    if needed == OPERATOR:
        raise CliError(f"`{name}` is an operator command: it needs the database (SWITCHBOARD_DATABASE_URL), "
                       f"not a token (given by {where}); run it without --token and with {ENV} unset")
    if needed not in tokens.ROLES:
        raise CliError(f"`{name}` declares no role, so it cannot run with a token")
    config = _config()
    engine = _engine(config)
    try:
        found = tokens.find_token(engine, token, config.admin_token)
    finally:
        engine.dispose()
    if found is None:
        raise CliError(f"the token given by {where} is not valid (unknown or revoked); "
                       "`switchboard tokens list` shows the tokens, `switchboard tokens create` makes one")
    if not allows(found["role"], needed):
        raise CliError(f"`{name}` needs the {needed} role; the token {found['name']!r} has the {found['role']} role")
    return tokens.actor_of(found)


@contextlib.contextmanager
def acting(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
           stdin: TextIO | None = None) -> Iterator[str]:
    """Run the body as the command's principal: the operator (``cli``) or the token's actor."""
    given = token_of(args, os.environ if environ is None else environ, sys.stdin if stdin is None else stdin)
    who = "cli" if given is None else authorize(args, *given)
    reset = _actor.set(who)
    try:
        yield who
    finally:
        _actor.reset(reset)

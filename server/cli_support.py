"""Helpers every CLI command shares (the core commands in ``server/cli.py`` and the planes' own
``add_commands``): the one-line error type, and settings / store / catalog opened with a
one-line message instead of a traceback.

A leaf module: it imports only the kernel, the store and the catalog, so a plane's commands can
use it without importing ``server.cli`` (which imports the planes that add commands). ``main`` catches
``CliError`` from here, whichever module runs as ``__main__``.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import socket
from typing import Iterable

from server.config import Config, ConfigError

EXIT_USAGE = 2


class CliError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate a typo most likely meant (difflib), or one it starts, or None."""
    candidates = list(candidates)
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close and word:  # "google" for "google_analytics_4": a prefix is a good guess too
        close = [c for c in candidates if c.lower().startswith(word.lower())][:1]
    return close[0] if close else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest candidate, or "" when none is close."""
    guess = closest(word, candidates)
    return f" (did you mean {guess!r}?)" if guess else ""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, not the usage block
        if message.startswith("unrecognized arguments: --token"):  # `switchboard sources list --token …`
            message = "--token goes before the command: switchboard --token TOKEN COMMAND …"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")

    def _check_value(self, action, value):  # type: ignore[no-untyped-def]  # argparse's hook for choices
        # A mistyped command, action or choice gets a suggestion ("did you mean 'sources'?").
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            hint = did_you_mean(str(value), [str(c) for c in action.choices])
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint} (choose from {choices})")
        return super()._check_value(action, value)


def check_port(host: str, port: int) -> None:
    """Fail with one line when ``host:port`` cannot be listened on (a busy port, say), before the
    server starts: uvicorn would log a bare ``[Errno 98]`` and no hint."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror} (set SWITCHBOARD_HOST or --host)") from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise CliError(f"port {port} is already in use on {host}: stop the other server or choose "
                                   "another port with SWITCHBOARD_PORT=… or --port …") from None
                raise CliError(f"cannot listen on {host}:{port}: {exc.strerror} "
                               "(set SWITCHBOARD_HOST / SWITCHBOARD_PORT, or --host / --port)") from None


def config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def engine(config: Config):
    from sqlalchemy.exc import SQLAlchemyError

    from server.store import bell, open_store

    try:
        engine = open_store(config.database_url, busy_timeout=config.sqlite_busy_timeout)
    except SQLAlchemyError as exc:
        # One line naming the variable, not a driver traceback.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError(f"cannot open SWITCHBOARD_DATABASE_URL: {reason}") from None
    # On SQLite a command's changes reach running servers and workers at once, as NOTIFY does on
    # PostgreSQL (server/store/bell.py); `serve` and `worker` start a full bell over it.
    bell.ring_only(engine)
    return engine


def catalog():
    from server.catalog import CatalogError, load_catalog

    try:
        return load_catalog()
    except CatalogError as exc:
        raise CliError(f"the destination catalog is broken: {exc}") from None

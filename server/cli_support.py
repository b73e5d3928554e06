"""Helpers every CLI command shares (the core commands in ``server/cli.py`` and the planes' own
``add_commands``): the one-line error type, and settings / store / catalog opened with a
one-line message instead of a traceback.

A leaf module: it imports only the kernel, the store and the catalog, so a plane's commands can
use it without importing ``server.cli`` (which imports every plane). ``main`` catches
``CliError`` from here, whichever module runs as ``__main__``.
"""

from __future__ import annotations

import argparse

from server.config import Config, ConfigError

EXIT_USAGE = 2


class CliError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, not the usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def engine(config: Config):
    from sqlalchemy.exc import SQLAlchemyError

    from server.store import open_store

    try:
        return open_store(config.database_url, busy_timeout=config.sqlite_busy_timeout)
    except SQLAlchemyError as exc:
        # One line naming the variable, not a driver traceback.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError(f"cannot open SWITCHBOARD_DATABASE_URL: {reason}") from None


def catalog():
    from server.catalog import CatalogError, load_catalog

    try:
        return load_catalog()
    except CatalogError as exc:
        raise CliError(f"the destination catalog is broken: {exc}") from None

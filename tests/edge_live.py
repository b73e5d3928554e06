"""``switchboard serve`` for the edge tests: extra CLI arguments, and its stderr kept for checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import LiveServer  # tests/conftest's, or e2e/conftest's re-export in a combined run

ROOT = Path(__file__).resolve().parent.parent


class LoggedServer(LiveServer):
    def __init__(self, database_url: str, log: Path, *args: str, preexec_fn=None, **env: str):
        super().__init__(database_url, **env)
        self.args, self.log, self.preexec_fn = list(args), log, preexec_fn

    def spawn(self) -> subprocess.Popen:
        with self.log.open("wb") as sink:
            return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", *self.args],
                                    env=self.env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                    preexec_fn=self.preexec_fn)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def admin_server(folder: Path, password: str, *args: str, **env: str) -> LoggedServer:
    """A started ``switchboard serve`` on a new SQLite file whose admin signs in with ``password``."""
    from server.config import Config
    from server.store import open_store
    from server.web import accounts

    url = f"sqlite:///{folder / 'live.db'}"
    engine = open_store(url)
    accounts.ensure_admin(Config(database_url=url, admin_password=password), engine)
    engine.dispose()
    return LoggedServer(url, folder / "server.log", *args, SWITCHBOARD_DELIVERY_WORKERS="false", **env).start()

"""``switchboard serve`` for the edge tests: extra CLI arguments, and its stderr kept for checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import LiveServer  # tests/conftest's, or e2e/conftest's re-export in a combined run
from pgserver import wait_for_port

ROOT = Path(__file__).resolve().parent.parent


class LoggedServer(LiveServer):
    def __init__(self, database_url: str, log: Path, *args: str, preexec_fn=None, **env: str):
        super().__init__(database_url, **env)
        self.args, self.log, self.preexec_fn = list(args), log, preexec_fn

    def start(self) -> "LoggedServer":
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", *self.args],
                                            env=self.env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                            preexec_fn=self.preexec_fn)
        try:
            wait_for_port(self.port, 30)
        except TimeoutError:
            self.stop()
            raise
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

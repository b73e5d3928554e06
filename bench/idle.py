"""Idle cost: CPU an idle ``switchboard serve`` burns with its background workers on, against the
same server with them off (``SWITCHBOARD_DELIVERY_WORKERS=false``), from one run.

    .venv/bin/python bench/idle.py [--seconds 10] [--database sqlite,postgres]

Each server runs as a subprocess on a fresh database with one source and a webhook destination
(so delivery, the warehouse scheduler and the privacy runner all run), is given 5 s to settle,
and then its CPU time (user + system, all threads, from /proc) is read over ``--seconds``. Each
figure is the median of 3 rounds (bench/rounds.py) with its spread and the load average.
Target (issue #20): the workers add ≤ 1 % of a core; before they slept on the change bus they
polled and cost 5.6–6.4 %.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from rounds import header, rounds  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Serve:
    def __init__(self, database_url: str, workers: bool):
        from pgserver import free_port, wait_for_port

        self.port = free_port()
        env = {**os.environ, "SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_LOG_LEVEL": "WARNING",
               "SWITCHBOARD_DELIVERY_WORKERS": "true" if workers else "false"}
        self.process = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(self.port)],
                                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        wait_for_port(self.port, 30)
        time.sleep(5)  # startup passes, first heartbeats

    def percent(self, seconds: float) -> float:
        before = cpu_seconds(self.process.pid)
        time.sleep(seconds)
        return (cpu_seconds(self.process.pid) - before) / seconds * 100

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def prepare(database_url: str) -> None:
    from server.store import open_store, workspace

    engine = open_store(database_url)
    source = workspace.create_source(engine, "Idle")
    workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                              settings={"url": "http://127.0.0.1:9/in"})
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database", default="sqlite,postgres")
    args = parser.parse_args()
    header("bench/idle.py: CPU of an idle `switchboard serve`, % of one core")
    print("| store | workers off | workers on | added by the workers (target ≤ 1 %) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir, contextlib.ExitStack() as stack:
        for kind in args.database.split(","):
            if kind == "sqlite":
                url = f"sqlite:///{Path(workdir) / 'idle.db'}"
            else:
                from pgserver import postgres_server

                url = stack.enter_context(postgres_server()).create_database()
            prepare(url)
            figures = {}
            for workers in (False, True):
                server = Serve(url, workers)
                try:
                    figures[workers] = rounds(lambda: server.percent(args.seconds))
                finally:
                    server.stop()
            added = figures[True].median - figures[False].median
            print(f"| {kind} | {figures[False].text('{:.2f} %')} | {figures[True].text('{:.2f} %')} | "
                  f"{added:.2f} % |", flush=True)


if __name__ == "__main__":
    main()

"""py-spy the real collector under bench/collect.py's wrk load; write py-spy's raw stacks.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profiles/spy_collect.py sqlite|postgres batch|single OUT [--native]
    .venv/bin/python bench/profiles/summarise_pyspy.py OUT.raw

Starts our server (as bench/collect.py does) on a fresh database, warms it for 3 s, then
records 10 s at 200 Hz of the GIL-holding threads (``--gil``: what Python does; the time
SQLite or the kernel spend with the GIL released is not in it) while wrk sends batches of 100
(32 connections) or single events (64). Prints the run's CPU per event, as bench/collect.py
counts it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import collect  # noqa: E402


def main() -> None:
    db, kind, out = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = collect.database(db, Path(tmp), stack)
        from server.store import open_store, workspace

        engine = open_store(url)
        key = workspace.create_source(engine, "Profile")["write_key"]
        ours = collect.Server("ours", url)
        try:
            batch = 100 if kind == "batch" else 0
            connections = 32 if batch else 64
            collect.wrk(ours.port, key, batch=batch, duration=3, connections=connections)
            spy = subprocess.Popen(
                [str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(ours.process.pid), "-d", "10", "-r", "200",
                 "--format", "raw", "-o", out + ".raw", "--threads", "--gil", "--nonblocking",
                 *(["--native"] if "--native" in sys.argv else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            run = ours.measure(key, batch=batch, duration=10, connections=connections)
            spy.wait()
        finally:
            ours.stop()
            engine.dispose()
        print(f"{run['rps']:,.0f} req/s, {run['cpu_us'] / (batch or 1):.1f} us CPU per event")


if __name__ == "__main__":
    main()

"""Suppression's cost on the collector's hot path, in process (no sockets), from one run:

    .venv/bin/python bench/suppression.py [--seconds 2]

Times the collector's request → rows step (``server.ingest.collector._rows``: validation,
normalisation, the suppression check, row building) for a 20-event batch three ways, side by
side: no user suppressed (the usual case: the check is skipped), 10,000 users suppressed (none of
them in the batch: one set lookup per event), and the same with half the batch's users suppressed.
Prints µs per batch and the ratios to the first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from server.config import Config
from server.ingest.asgi import Call
from server.ingest.collector import Collector, _rows
from server.store import open_store


def batch(n: int = 20) -> dict:
    return {"batch": [{"type": "track", "event": "Viewed", "userId": f"user-{i}", "properties": {"i": i}}
                      for i in range(n)]}


def time_rows(collector: Collector, body: dict, seconds: float) -> float:
    call = Call({"type": "http", "headers": [], "client": ("127.0.0.1", 1), "path": "/v1/batch",
                 "method": "POST", "query_string": b""}, None)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(50):
            _rows(call, collector, 1, body, None, 2000)
        runs += 50
    return (time.perf_counter() - started) / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        collector = Collector(Config(database_url=url), open_store(url))
        body = batch()
        empty = time_rows(collector, body, args.seconds)
        collector.suppressions.pairs = frozenset((f"other-{i}", 0) for i in range(10_000))
        big = time_rows(collector, body, args.seconds)
        collector.suppressions.pairs |= frozenset((f"user-{i}", 0) for i in range(0, 20, 2))
        half = time_rows(collector, body, args.seconds)
    print(f"{'case':<48}{'µs/batch':>10}{'ratio':>8}")
    for name, value in [("nobody suppressed", empty), ("10,000 suppressed, none in the batch", big),
                        ("10,000 suppressed, half the batch", half)]:
        print(f"{name:<48}{value:>10.1f}{value / empty:>8.2f}")


if __name__ == "__main__":
    main()

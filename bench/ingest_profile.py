"""Where a batch's CPU goes: the collector's batch path in one thread, under cProfile or a clock.

    .venv/bin/python bench/ingest_profile.py [--database sqlite|postgres] [--batches 300] [--group 8]
        [--profile out.txt]

Runs exactly what a ``POST /v1/batch`` costs the server, minus HTTP: the request side
(``TrackingEndpoint.answer``'s work up to the hand-off: read body, parse, key, validate,
normalise, serialise the rows) for ``--group`` requests of 100 analytics.js-like events, then
the writer's side (``events.append``: dedupe and insert, one transaction) for the group, as the
group-commit writer would. One thread, so cProfile sees all of it (in the server the two halves
run in the event loop and the writer thread). Without ``--profile`` it prints the CPU per event
of each half, median of 3 rounds; with it, the top functions by own and cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from collect import CONTEXT  # noqa: E402  (the same event bench/collect.py sends)
from rounds import header, rounds  # noqa: E402


def batch_body(key: str, prefix: str, n: int = 100) -> bytes:
    items = [
        '{"type":"track","event":"Plan Selected","anonymousId":"5f0e3a1c-8d2b-4e6f-9a7c-1b2d3e4f5a6b",'
        f'"userId":"user-1234","messageId":"{prefix}-{i}","timestamp":"2026-11-29T10:00:00.000Z",'
        '"properties":{"plan":"pro","price":49,"currency":"EUR"},"integrations":{},'
        f'"context":{CONTEXT}}}'
        for i in range(n)
    ]
    return (f'{{"writeKey":"{key}","sentAt":"2026-11-29T10:00:00.100Z","batch":[' + ",".join(items) + "]}").encode()


class Harness:
    def __init__(self, url: str, group: int):
        from server.config import Config
        from server.ingest import collector as ingest
        from server.store import open_store, workspace

        self.engine = open_store(url)
        self.key = workspace.create_source(self.engine, "Profile")["write_key"]
        self.collector = ingest.Collector(Config(database_url=url), self.engine)
        self.collector.keys.subscribe()
        self.conn = self.engine.connect()
        self.group = group
        self.loop = asyncio.new_event_loop()
        self.prepare_seconds = self.append_seconds = 0.0
        self.events = 0

    def scope(self) -> dict:
        return {"type": "http", "method": "POST", "path": "/v1/batch", "client": ("127.0.0.1", 5000),
                "headers": [(b"content-type", b"application/json")], "path_params": {"call": "batch"}}

    async def prepare(self, body: bytes):
        from server.ingest import collector as ingest
        from server.ingest.asgi import Call
        from server.ingest.body import BATCH_LIMIT, parse_object, read_body

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        call = Call(self.scope(), receive)
        data = await read_body(call, BATCH_LIMIT, "batch_too_large", "batch")
        parsed = parse_object(data)
        source_id = await ingest._source_id(self.collector, call, parsed)
        return ingest._rows(call, self.collector, source_id, parsed, None, len(data))

    def one_group(self) -> None:
        from server.store import events

        bodies = [batch_body(self.key, uuid.uuid4().hex) for _ in range(self.group)]
        start = time.process_time()
        prepared = [self.loop.run_until_complete(self.prepare(body)) for body in bodies]
        middle = time.process_time()
        rows = [row for batch, _refused in prepared for row in batch]
        flags = events.append(self.conn, rows, dedupe_window=86400)
        end = time.process_time()
        assert all(flags)
        self.prepare_seconds += middle - start
        self.append_seconds += end - middle
        self.events += len(rows)

    def close(self) -> None:
        self.conn.close()
        self.collector.keys.close()
        self.loop.close()
        self.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--batches", type=int, default=300, help="requests of 100 events per round")
    parser.add_argument("--group", type=int, default=8, help="requests per commit (default 8)")
    parser.add_argument("--profile", help="write a cProfile summary (top functions) to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, contextlib.ExitStack() as stack:
        if args.database == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'profile.db'}"
        else:
            from pgserver import postgres_server

            url = stack.enter_context(postgres_server()).create_database()
        harness = Harness(url, args.group)
        groups = max(1, args.batches // args.group)
        for _ in range(3):  # warm: caches, prepared statements, the key cache
            harness.one_group()
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(groups):
                harness.one_group()
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs()
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(30)
            Path(args.profile).write_text(out.getvalue())
            print(f"wrote {args.profile}")
        else:
            header(f"batch path in-process, {args.database}, {args.group} requests of 100 per commit")

            def measure(part: str):
                def run() -> float:
                    harness.prepare_seconds = harness.append_seconds = 0.0
                    harness.events = 0
                    for _ in range(groups):
                        harness.one_group()
                    return getattr(harness, f"{part}_seconds") / harness.events * 1e6
                return run

            prepare = rounds(measure("prepare"))
            append = rounds(measure("append"))
            print(f"request side (parse, validate, normalise, rows): {prepare.text('{:.1f} us/event')}")
            print(f"writer side (dedupe + insert, one transaction):  {append.text('{:.1f} us/event')}")
        harness.close()


if __name__ == "__main__":
    main()

"""One delivery worker draining a backlog, in this process, optionally under cProfile.

``bench/deliver.py`` measures the whole product (collector and delivery sharing a process);
this isolates what one delivery worker costs per event, so that a profile shows only delivery:
a fresh SQLite (or ``--postgres``) database gets one source with ``--destinations`` webhook
destinations (``--batch-size``), ``--events`` events are appended to its log directly, the fast
receiver of ``bench/transport.py`` runs in its own process, and a ``DeliveryService`` (the same
one ``switchboard worker`` runs, on uvloop) fans them out and delivers them. Printed: delivered
events/s per worker (fan-out included), and with ``--profile`` the top functions by own and
cumulative time.

Usage: .venv/bin/python bench/deliver_profile.py [--events 20000] [--batch-size 1] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import func, select  # noqa: E402

from pgserver import free_port, postgres_server, wait_for_port  # noqa: E402
from server.catalog import load_catalog  # noqa: E402
from server.store import delivery as store  # noqa: E402
from server.store import events, open_store, workspace  # noqa: E402
from server.store.engine import read_only  # noqa: E402
from server.delivery.worker import DeliveryService  # noqa: E402  (imported before any timing)


def count(engine, status: str) -> int:
    with read_only(engine) as conn:
        return conn.execute(select(func.count()).select_from(store.delivery_jobs)
                            .where(store.delivery_jobs.c.status == status)).scalar_one()


def fill(engine, source_id: int, total: int) -> None:
    now = store.utcnow()
    for start in range(0, total, 1000):
        items = [{"type": "track", "event": "Order Completed", "userId": f"u{i % 50}",
                  "messageId": f"b-{uuid.uuid4().hex}", "timestamp": now.isoformat(),
                  "properties": {"i": i, "order_id": f"o-{i}", "total": 42.5, "currency": "EUR"},
                  "context": {"ip": "203.0.113.7", "library": {"name": "analytics.js", "version": "1"}}}
                 for i in range(start, min(total, start + 1000))]
        events.append(engine, events.rows_for(source_id, now, items), dedupe_window=3600)


async def drain(engine, expected: int, concurrency: int) -> tuple[float, float, float]:
    """(seconds until all are delivered, CPU seconds spent by this benchmark's own counting, CPU
    seconds of the event loop's thread)."""
    loop_cpu = time.thread_time()
    service = await DeliveryService(engine, load_catalog(), allow_private_egress=True,
                                    concurrency=concurrency).start()
    started = time.perf_counter()
    counting = 0.0

    def look() -> int:  # in a thread, so the worker's loop is not blocked; its CPU is not the worker's
        nonlocal counting
        before = time.thread_time()
        try:
            return count(engine, store.DELIVERED)
        finally:
            counting += time.thread_time() - before

    try:
        while await asyncio.to_thread(look) < expected:
            await asyncio.sleep(0.1)
        return time.perf_counter() - started, counting, time.thread_time() - loop_cpu
    finally:
        await service.stop()


THREAD_CPU: dict[str, float] = {}
THREAD_CALLS: dict[str, int] = {}


def _timed(module, name: str) -> None:
    """Count the thread CPU and the calls of one store function (``--split``)."""
    original = getattr(module, name)

    def timed(*args, **kwargs):
        before = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            THREAD_CPU[name] = THREAD_CPU.get(name, 0.0) + time.thread_time() - before
            THREAD_CALLS[name] = THREAD_CALLS.get(name, 0) + 1

    setattr(module, name, timed)


def run(db_url: str, args) -> None:
    if args.split:
        from server.store import claims, fanout

        for name in ("finish", "due_work", "release"):
            _timed(store, name)
        _timed(claims, "claim_many")
        _timed(fanout, "fanout_pass")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, str(ROOT / "bench" / "transport.py"), "--receiver", str(port)])
    try:
        wait_for_port(port, 30)
        engine = open_store(db_url)
        source = workspace.create_source(engine, "bench")
        for _ in range(args.destinations):
            workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                      settings={"url": f"http://127.0.0.1:{port}/hook", "batch_size": args.batch_size})
        fill(engine, source["id"], args.events)
        import uvloop

        profile = cProfile.Profile() if args.profile else None
        cpu = time.process_time()
        if profile:
            profile.enable()
        seconds, counting, loop_cpu = uvloop.run(drain(engine, args.events * args.destinations, args.concurrency))
        if profile:
            profile.disable()
        cpu = time.process_time() - cpu - counting
        delivered = args.events * args.destinations
        print(f"\none worker, {'PostgreSQL' if args.postgres else 'SQLite'}, {args.destinations} webhook "
              f"destination(s), batch_size {args.batch_size}, load average {os.getloadavg()[0]:.1f}: "
              f"{delivered:,} events delivered in {seconds:.2f} s = {delivered / seconds:,.0f} events/s; "
              f"worker CPU {cpu / delivered * 1e6:.0f} µs/event (event loop {loop_cpu / delivered * 1e6:.0f}, "
              f"threads {(cpu - loop_cpu) / delivered * 1e6:.0f}){' (under cProfile)' if profile else ''}")
        if args.split:
            print("thread CPU per event, µs: " + ", ".join(
                f"{name} {seconds / delivered * 1e6:.1f} ({delivered / THREAD_CALLS[name]:.1f} events a call)"
                for name, seconds in sorted(THREAD_CPU.items())))
        if profile:
            stats = pstats.Stats(profile).strip_dirs()
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
        engine.dispose()
    finally:
        receiver.terminate()
        receiver.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--destinations", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--split", action="store_true", help="thread CPU of each store function")
    args = parser.parse_args()
    if args.postgres:
        with postgres_server() as pg:
            run(pg.create_database(), args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", args)


if __name__ == "__main__":
    main()

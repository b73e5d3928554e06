"""Cost growth: how the collector, the event log and the bundle cache grow with the work.

    .venv/bin/python bench/cost.py                  # parts 1-3 at full size (a few minutes)
    .venv/bin/python bench/cost.py --quick          # parts 1-3 with small fills, labelled QUICK
    .venv/bin/python bench/cost.py --collector [--postgres] [--events 1000000]
    .venv/bin/python bench/cost.py --event-log [--events 1000000] [--pg-events 200000]
    .venv/bin/python bench/cost.py --bundle-cache [--keys 10000]
    .venv/bin/python bench/cost.py --fanout [--postgres]   # runs bench/fanout.py (10 vs 100 destinations)

Every figure comes from real server processes on 127.0.0.1 and a real SQLite file or a private
PostgreSQL cluster (tests/pgserver.py), side by side from one run:

1. ``--collector``: single-event ``POST /v1/t`` (wrk, a ~600-byte analytics.js event, a unique
   messageId per request; bench/collect.py's servers and Lua) against two servers of the real app
   (delivery workers off), one on an empty store and one on a store holding ``--events``
   (default 1,000,000) events. Rounds alternate empty, full, empty, … so both see the same load,
   and the empty store is emptied again before each of its rounds (what wrk stored is deleted);
   req/s, p50 and p99 are medians of ``--rounds`` (≥ 3) with their spread and the load average
   (bench/rounds.py), and the full/empty ratios are printed.
   The store is filled through the store's own append path (``server.store.events.append``, the
   call the collector's group-commit writer makes) in batches of 10,000: payloads are the
   collector's own normalisation (``server.ingest.normalise``) of the wrk event, ~600 bytes, with
   distinct messageIds, all received "now" — so ``message_ids`` (the 24 h dedupe window) holds
   every one of them too, the worst case for the dedupe lookup every request makes.
2. ``--event-log``: bytes per stored event, and so per million events. SQLite: the database file
   (plus -wal/-shm, after ``PRAGMA wal_checkpoint(TRUNCATE)``) at half and at all of
   ``--events``; the growth between the two is the marginal cost. Split by table with SQLite's
   dbstat when the library has it. PostgreSQL: ``pg_total_relation_size`` (heap + TOAST +
   indexes) of ``events`` and of ``message_ids`` after ``VACUUM ANALYZE``, at half and at all of
   ``--pg-events`` (default 200,000), scaled to a million (the growth is linear: compare the two).
3. ``--bundle-cache``: a server with ``--keys`` (default 10,000) sources, each with one
   device-mode destination (bench/bundle.py's bulk insert): RSS at start, after serving the
   first 10 % of the bundles once, after all of them, and after a second pass over all,
   at the default SWITCHBOARD_BUNDLE_CACHE_MB (the LRU bound, in bytes of bundles). One pass,
   not a timing: RSS, and the peak (VmHWM). bench/bundle.py ``--only keys`` measures the same
   server under wrk (req/s, CPU per request; docs/bundle.md).
4. ``--fanout``: delivery with 100 destinations on one source is bench/fanout.py's measurement
   (10 vs 100 webhook destinations, same total jobs; docs/delivery.md). This flag runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402

from rounds import Figure, count as round_count, header, load  # noqa: E402
from server.store import events, open_store, workspace  # noqa: E402

FILL_BATCH = 10_000
DEDUPE_WINDOW = 86_400.0  # the default SWITCHBOARD_DEDUPE_WINDOW


# ---------------------------------------------------------------- filling a store


def _template() -> dict:
    """The wrk event of bench/collect.py, normalised by the collector's own code: what the
    collector stores for it (context.ip, receivedAt, sentAt, timestamp corrected)."""
    from collect import CONTEXT
    from server.ingest.normalise import normalise

    body = ('{"type":"track","event":"Plan Selected","anonymousId":"5f0e3a1c-8d2b-4e6f-9a7c-1b2d3e4f5a6b",'
            '"userId":"user-1234","messageId":"x","timestamp":"2026-11-29T10:00:00.000Z",'
            '"sentAt":"2026-11-29T10:00:00.100Z",'
            '"properties":{"plan":"pro","price":49,"currency":"EUR"},"integrations":{},'
            f'"context":{CONTEXT}}}')
    now = datetime.now(timezone.utc)
    return normalise(orjson.loads(body), index=None, route_type="track", received_at=now,
                     received_iso=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), ip="127.0.0.1")


def fill(engine, source_id: int, count: int, prefix: str) -> float:
    """Append ``count`` events with distinct messageIds through ``events.append``; events/s."""
    template = _template()
    start = time.perf_counter()
    done = 0
    while done < count:
        n = min(FILL_BATCH, count - done)
        items = []
        for i in range(done, done + n):
            item = dict(template)
            item["messageId"] = f"{prefix}-{i:09d}-{uuid.uuid4().hex[:12]}"
            items.append(item)
        stored = events.append(engine, events.rows_for(source_id, datetime.now(timezone.utc), items),
                               dedupe_window=DEDUPE_WINDOW)
        assert all(stored), "a fill event was taken for a duplicate"
        done += n
        if done % 200_000 == 0:
            print(f"  … {done:,} events stored", flush=True)
    return count / (time.perf_counter() - start)


def payload_bytes(engine) -> float:
    from sqlalchemy import func, select

    with engine.connect() as conn:
        return float(conn.execute(select(func.avg(func.length(events.events.c.payload)))).scalar() or 0)


# ---------------------------------------------------------------- part 2: event-log size


def sqlite_size(path: Path) -> dict:
    """Bytes on disk after a checkpoint (file + -wal + -shm), and per table with dbstat."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables: dict[str, int] = {}
        with contextlib.suppress(sqlite3.DatabaseError):  # dbstat is a compile-time option
            for name, size in conn.execute(
                    "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
                    "LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1"):
                tables[name] = size
    finally:
        conn.close()
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {"total": total, "events": tables.get("events"), "message_ids": tables.get("message_ids")}


def pg_size(url: str) -> dict:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
        conn.execute("VACUUM ANALYZE message_ids")
        events_size, ids_size, db = conn.execute(
            "SELECT pg_total_relation_size('events'), pg_total_relation_size('message_ids'), "
            "pg_database_size(current_database())").fetchone()
    return {"total": db, "events": events_size, "message_ids": ids_size}


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def print_sizes(store: str, rows: list[tuple[int, dict]], scaled: bool) -> None:
    (half, a), (full, b) = rows
    per = {k: (b[k] - a[k]) / (full - half) for k in ("total", "events", "message_ids") if b.get(k) is not None}
    print(f"{store}: {half:,} events -> {_mb(a['total'])}; {full:,} events -> {_mb(b['total'])} "
          f"(whole {'database' if store == 'PostgreSQL' else 'file incl. WAL'})")
    for key, label in (("total", "whole store"), ("events", "events table + its index"),
                       ("message_ids", "message_ids (dedupe window, pruned after 24 h)")):
        if key in per:
            print(f"  {label:48} {per[key]:6.0f} bytes/event (growth {half:,} -> {full:,})  "
                  f"= {_mb(per[key] * 1e6)} per million{' (scaled)' if scaled else ''}; "
                  f"at {full:,}: {b[key] / full:.0f} bytes/event")


def event_log(args, pg_url_factory) -> None:
    print(f"\n== 2. Event-log size per million events ({'QUICK: ' if args.quick else ''}"
          f"SQLite measured at {args.events:,}, PostgreSQL at {args.pg_events:,} and scaled)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        path = Path(tmp) / "log.db"
        engine = open_store(f"sqlite:///{path}")
        source = workspace.create_source(engine, "Cost")
        rows = []
        for target in (args.events // 2, args.events):
            rate = fill(engine, source["id"], target - (rows[-1][0] if rows else 0), f"s{target}")
            rows.append((target, sqlite_size(path)))
            print(f"  filled to {target:,} at {rate:,.0f} events/s", flush=True)
        print(f"  average stored payload (JSON text): {payload_bytes(engine):.0f} bytes")
        engine.dispose()
        print_sizes("SQLite", rows, scaled=False)
    url = pg_url_factory()
    if url is None:
        print("PostgreSQL: not installed, skipped")
        return
    engine = open_store(url)
    source = workspace.create_source(engine, "Cost")
    rows = []
    for target in (args.pg_events // 2, args.pg_events):
        rate = fill(engine, source["id"], target - (rows[-1][0] if rows else 0), f"p{target}")
        rows.append((target, pg_size(url)))
        print(f"  filled to {target:,} at {rate:,.0f} events/s", flush=True)
    engine.dispose()
    print_sizes("PostgreSQL", rows, scaled=args.pg_events < 1_000_000)


# ---------------------------------------------------------------- part 1: collector p99


def empty_out(engine) -> None:
    """Delete every event and remembered messageId (the server is idle between rounds)."""
    with engine.begin() as conn:
        conn.execute(events.events.delete())
        conn.execute(events.message_ids.delete())


def collector(args, db_url_factory, store: str) -> None:
    from collect import Server, wrk

    print(f"\n== 1. Collector, single events: empty store vs {args.events:,} stored events "
          f"({'QUICK, ' if args.quick else ''}{store}; wrk -t1 -c{args.connections}, {args.duration:g} s per run, "
          f"{args.rounds} alternating rounds)", flush=True)
    sides = {}
    for name, count in (("empty", 0), ("full", args.events)):
        url = db_url_factory(name)
        engine = open_store(url)
        source = workspace.create_source(engine, "Cost")
        if count:
            rate = fill(engine, source["id"], count, "fill")
            print(f"  filled {count:,} events at {rate:,.0f} events/s through events.append "
                  f"(batches of {FILL_BATCH:,}, {payload_bytes(engine):.0f}-byte payloads)", flush=True)
        sides[name] = {"engine": engine, "key": source["write_key"], "url": url, "runs": []}
    servers = {}
    try:
        for name, side in sides.items():
            servers[name] = Server("ours", side["url"])
        for name, side in sides.items():  # warm-up: connections, caches, the writer thread
            wrk(servers[name].port, side["key"], batch=0, duration=min(2.0, args.duration),
                connections=args.connections)
        for _ in range(round_count(args.rounds)):
            for name, side in sides.items():
                if name == "empty":
                    empty_out(side["engine"])  # what the last round stored: each round starts empty
                side["rows"] = events.count_events(side["engine"])
                run = wrk(servers[name].port, side["key"], batch=0, duration=args.duration,
                          connections=args.connections)
                run["load"] = load()
                run["rows"] = side["rows"]
                if run["non2xx"] or run["errors"]:
                    print(f"WARNING: {name}: {run['non2xx']} non-2xx answers, {run['errors']} socket errors")
                side["runs"].append(run)
    finally:
        for server in servers.values():
            server.stop()
    figures = {}
    for name, side in sides.items():
        stored = events.count_events(side["engine"])
        side["engine"].dispose()
        figures[name] = {k: Figure([r[k] for r in side["runs"]], [r["load"] for r in side["runs"]])
                         for k in ("rps", "p50", "p99")}
        label = "empty store" if name == "empty" else f"{args.events:,} events stored"
        print(f"  {label:24} req/s {figures[name]['rps'].text('{:,.0f}')}")
        print(f"  {'':24} p50   {figures[name]['p50'].text('{:.2f} ms')}")
        print(f"  {'':24} p99   {figures[name]['p99'].text('{:.2f} ms')}")
        starts = ", ".join(f"{r['rows']:,}" for r in side["runs"])
        print(f"  {'':24} rows when each round started: {starts}; "
              f"{stored:,} at the end")
    empty, full = figures["empty"], figures["full"]
    print(f"  ratio full / empty: req/s {full['rps'].median / empty['rps'].median:.2f}, "
          f"p50 {full['p50'].median / empty['p50'].median:.2f}, p99 {full['p99'].median / empty['p99'].median:.2f} "
          "(medians; 1.00 = no growth)")


# ---------------------------------------------------------------- part 3: bundle cache RSS


def bundle_cache(args) -> None:
    from bundle import OUR_APP, bulk_sources, rss_mb, start, visit_all
    from pgserver import free_port

    from server.config import Config

    mb = Config().bundle_cache_mb
    print(f"\n== 3. Bundle cache memory: {args.keys:,} write keys, SWITCHBOARD_BUNDLE_CACHE_MB={mb} (default) "
          f"{'(QUICK) ' if args.quick else ''}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        url = f"sqlite:///{tmp}/keys.db"
        engine = open_store(url)
        keys = bulk_sources(engine, args.keys)
        engine.dispose()
        port = free_port()
        env = {"SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_LOG_LEVEL": "WARNING",
               "SWITCHBOARD_DELIVERY_WORKERS": "false", "SWITCHBOARD_PUBLIC_URL": "https://analytics.bench.test",
               "SWITCHBOARD_PORT": str(port)}
        proc = start([sys.executable, "-c", OUR_APP], port, env)
        try:
            time.sleep(1.0)
            rss0, _ = rss_mb(proc.pid)
            print(f"  RSS at start: {rss0:.0f} MB", flush=True)
            tenth = max(1, len(keys) // 10)
            steps = [(f"after the first {tenth:,} bundles (each built once)", keys[:tenth]),
                     (f"after all {len(keys):,} bundles (each built once)", keys[tenth:]),
                     (f"after a second pass over all {len(keys):,}", keys)]
            for label, batch in steps:
                took = visit_all(port, batch)
                rss, peak = rss_mb(proc.pid)
                print(f"  RSS {label}: {rss:.0f} MB (+{rss - rss0:.0f} MB over start; peak {peak:.0f} MB; "
                      f"pass {took:.1f} s)", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    print("  (bench/bundle.py --only keys: the same 10,000-key server under wrk; docs/bundle.md)")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collector", action="store_true", help="part 1: collector p50/p99, empty vs full store")
    parser.add_argument("--event-log", action="store_true", help="part 2: event-log bytes per million events")
    parser.add_argument("--bundle-cache", action="store_true", help="part 3: RSS with many write keys")
    parser.add_argument("--fanout", action="store_true", help="part 4: run bench/fanout.py (10 vs 100 destinations)")
    parser.add_argument("--postgres", action="store_true", help="collector (and fanout) on PostgreSQL, not SQLite")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (100,000 events, 50,000 on PostgreSQL, 2,000 keys, 2 s runs)")
    parser.add_argument("--events", type=int, help="stored events for parts 1-2 (default 1,000,000)")
    parser.add_argument("--pg-events", type=int, help="PostgreSQL events for part 2 (default 200,000)")
    parser.add_argument("--keys", type=int, help="write keys for part 3 (default 10,000)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run in part 1 (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections in part 1 (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds in part 1 (default 3)")
    args = parser.parse_args()
    args.events = args.events or (100_000 if args.quick else 1_000_000)
    args.pg_events = args.pg_events or (50_000 if args.quick else 200_000)
    args.keys = args.keys or (2_000 if args.quick else 10_000)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    chosen = args.collector or args.event_log or args.bundle_cache or args.fanout
    if not chosen:
        args.collector = args.event_log = args.bundle_cache = True

    header(f"bench/cost.py: cost growth{' (QUICK: small sizes)' if args.quick else ''}")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cost-")))
        pg = None

        def postgres():
            nonlocal pg
            if pg is None:
                from pgserver import postgres_server

                pg = stack.enter_context(postgres_server())
            return pg

        if args.collector:
            if args.postgres:
                collector(args, lambda name: postgres().create_database(), "PostgreSQL")
            else:
                collector(args, lambda name: f"sqlite:///{tmp / name}.db", "SQLite")
        if args.event_log:
            def pg_url():
                try:
                    return postgres().create_database()
                except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError):
                    return None

            event_log(args, pg_url)
        if args.bundle_cache:
            bundle_cache(args)
    if args.fanout:
        print("\n== 4. Delivery with 100 destinations on one source: bench/fanout.py (docs/delivery.md)", flush=True)
        command = [sys.executable, str(ROOT / "bench" / "fanout.py"), "--rounds", str(args.rounds)]
        command += (["--postgres"] if args.postgres else []) + (["--jobs", "1000"] if args.quick else [])
        subprocess.run(command, check=True)
    else:
        print("\n4. Delivery with 100 destinations on one source: `bench/cost.py --fanout` runs bench/fanout.py "
              "(10 vs 100 destinations, same jobs; figures in docs/delivery.md)")


if __name__ == "__main__":
    main()

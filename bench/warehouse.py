"""Warehouse load speed: rows/s into SQLite and PostgreSQL, beside a plain executemany.

A realistic mix (30 % page, 50 % track over 20 event names, 20 % identify) is written into
the event log, then one warehouse sync loads it (read the log → Segment tables with schema
evolution, dedupe and users upserts → cursor). The ceiling is a plain ``executemany`` of the
same warehouse rows into one table (id, table name, received_at, JSON text) in one
transaction, on the same database with the same settings. A second sync after resetting the
cursor measures a full replay (every row a duplicate).

Each round loads fresh databases; every figure is the median of ``--rounds`` (≥ 3) with its
spread (min–max) and the load average (bench/rounds.py).

    .venv/bin/python bench/warehouse.py [--events 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402
import psycopg  # noqa: E402
from pgserver import postgres_server  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402

from server.catalog import load_catalog  # noqa: E402
from server.config import Config  # noqa: E402
from server.store import open_store, workspace  # noqa: E402
from server.store import warehouse as store  # noqa: E402
from server.store.events import events as events_table  # noqa: E402
from server.store.events import rows_for  # noqa: E402
from server.warehouse.batch import rows_by_table  # noqa: E402
from server.warehouse.sync import sync_destination  # noqa: E402

EVENT_NAMES = [
    "Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Order Completed",
    "Signed Up", "Signed In", "Signed Out", "Search Performed", "Video Played",
    "Video Paused", "Coupon Applied", "Product Removed", "Promotion Clicked", "Form Submitted",
    "Invite Sent", "Plan Upgraded", "Experiment Viewed", "Feature Used", "Support Opened",
]


def make_events(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    start = datetime(2024, 5, 1, tzinfo=timezone.utc)
    items = []
    for i in range(n):
        at = (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        user = f"user-{rng.randrange(5000)}"
        event = {
            "messageId": str(uuid.UUID(int=rng.getrandbits(128))), "anonymousId": f"anon-{rng.randrange(20000)}",
            "timestamp": at, "originalTimestamp": at, "sentAt": at, "receivedAt": at,
            "context": {"library": {"name": "analytics.js", "version": "5.2.0"}, "ip": "203.0.113.7",
                        "locale": "en-US", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120",
                        "page": {"path": "/shop", "url": "https://shop.example/shop", "title": "Shop"}},
            "integrations": {},
        }
        roll = rng.random()
        if roll < 0.30:
            event.update(type="page", name="Shop", properties={
                "path": "/shop", "url": "https://shop.example/shop", "title": "Shop", "referrer": "https://google.com/"})
        elif roll < 0.80:
            event.update(type="track", userId=user, event=rng.choice(EVENT_NAMES), properties={
                "product_id": f"p-{rng.randrange(500)}", "price": round(rng.uniform(1, 200), 2),
                "quantity": rng.randrange(1, 5), "currency": "USD", "category": "Games",
                "coupon": rng.choice([None, "SPRING"])})
        else:
            event.update(type="identify", userId=user, traits={
                "email": f"{user}@example.com", "plan": rng.choice(["free", "pro", "team"]),
                "createdAt": at, "logins": rng.randrange(100), "address": {"city": "Paris", "country": "FR"}})
        items.append(event)
    return items


def our_sync(store_url: str, settings: dict, items: list[dict]) -> tuple[float, float, int, float]:
    engine = open_store(store_url)
    source = workspace.create_source(engine, "Bench Shop")
    dest = workspace.add_destination(engine, source["id"], slug="warehouse", mode="cloud", enabled=True,
                                     settings={**settings, "batch_rows": 5000})
    with engine.begin() as conn:
        conn.execute(events_table.insert(), rows_for(source["id"], datetime.now(timezone.utc), items))
    # The PostgreSQL warehouse is a loopback cluster: internal addresses must be allowed (egress rules).
    catalog, config = load_catalog(), Config(database_url=store_url, delivery_workers=False, allow_private_egress=True)
    t0, c0 = time.perf_counter(), time.process_time()
    sync = sync_destination(engine, catalog, config, dest["id"])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert sync["error"] is None and sync["events"] == len(items), sync
    rows = sum(sync["rows"].values())
    with engine.begin() as conn:  # replay everything: every row is now a duplicate
        conn.execute(store.warehouse_cursors.update().values(last_event_id=0))
    t0 = time.perf_counter()
    replay = sync_destination(engine, catalog, config, dest["id"])
    replay_elapsed = time.perf_counter() - t0
    assert replay["error"] is None
    engine.dispose()
    return elapsed, cpu, rows, replay_elapsed


def plain_rows(items: list[dict]) -> list[tuple]:
    """The same warehouse rows the sync writes, as (id, table, received_at, JSON) tuples."""
    logged = [{"event": e, "received_at": datetime.now(timezone.utc)} for e in items]
    batch = rows_by_table(logged, ("Warehouse",), lambda m: None)
    out = []
    for table, rows in batch.tables.items():
        for n, row in enumerate(rows):  # users repeat an id per identify: number the rows instead
            out.append((f"{table}:{n}", table, row["received_at"].isoformat(),
                        orjson.dumps(row, default=str).decode()))
    return out


def plain_sqlite(path: Path, rows: list[tuple]) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE plain (id TEXT PRIMARY KEY, tbl TEXT, received_at TEXT, data TEXT)")
    t0 = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO plain VALUES (?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    db.close()
    return elapsed


def plain_postgres(url: str, rows: list[tuple]) -> float:
    with psycopg.connect(url.replace("+psycopg", "")) as db:
        db.execute("CREATE TABLE plain (id TEXT PRIMARY KEY, tbl TEXT, received_at TIMESTAMPTZ, data TEXT)")
        db.commit()
        t0 = time.perf_counter()
        with db.cursor() as cur:
            cur.executemany("INSERT INTO plain VALUES (%s, %s, %s, %s)", rows)
        db.commit()
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3, help="fresh loads of each target (default 3, at least 3)")
    args = parser.parse_args()
    args.rounds = round_count(args.rounds)
    header(f"bench/warehouse.py: warehouse load, {args.events:,} events, {args.rounds} rounds")
    items = make_events(args.events)
    rows = plain_rows(items)
    print(f"{args.events} events → {len(rows)} warehouse rows "
          f"(30% page, 50% track over {len(EVENT_NAMES)} names, 20% identify)\n")
    names = ("SQLite", "PostgreSQL")
    columns = ("sync s", "cpu s", "events/s", "rows/s", "replay s", "executemany rows/s", "ours/ceiling")
    figures = {name: {column: Figure([]) for column in columns} for name in names}

    def note(name: str, elapsed: float, cpu: float, loaded: int, replay: float, plain: float) -> None:
        ours, ceiling = loaded / elapsed, len(rows) / plain
        values = (elapsed, cpu, args.events / elapsed, ours, replay, ceiling, ours / ceiling)
        for column, value in zip(columns, values):
            figures[name][column].values.append(value)
            figures[name][column].loads.append(load())

    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg:
        tmp = Path(tmp)
        for number in range(args.rounds):
            ours = our_sync(f"sqlite:///{tmp / f'store{number}.db'}",
                            {"target": "sqlite", "sqlite_path": str(tmp / f"wh{number}.db")}, items)
            note("SQLite", *ours, plain_sqlite(tmp / f"plain{number}.db", rows))
            ours = our_sync(pg.create_database(), {"target": "postgresql", "database_url": pg.create_database()},
                            items)
            note("PostgreSQL", *ours, plain_postgres(pg.create_database(), rows))
            print(f"  round {number + 1}: " + ", ".join(
                f"{name} {figures[name]['rows/s'].values[-1]:,.0f} rows/s" for name in names) + f" ({load()})",
                flush=True)

    formats = ("{:.2f}", "{:.2f}", "{:,.0f}", "{:,.0f}", "{:.2f}", "{:,.0f}", "{:.2f}")
    print(f"\nmedian of {args.rounds} rounds (min–max); {load()}")
    print("| target | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in names:
        cells = [figures[name][column].spread(fmt) for column, fmt in zip(columns, formats)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nsync: read the log, build Segment tables (schema evolution, types, dedupe on id, users upsert), "
          "commit per table, move the cursor.\nexecutemany: the same rows as (id, table, received_at, JSON) "
          "into one table, one transaction, no transformation. replay: the same sync again, every row a duplicate.\n"
          "cpu s: CPU time of this process during the sync (the rest is waiting on commits, fsync and the database).")


if __name__ == "__main__":
    main()

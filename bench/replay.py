"""History replay vs live traffic: does a 100k-event replay to a new destination slow down live
delivery to another destination? (docs/delivery.md, "History replay")

One process with real SQLite (or ``--postgres``) and a real DeliveryService, and a loopback webhook
receiver in its own process. The source's log holds ``--events`` (100,000) events received an hour ago. Two phases
on the same database and machine, each ``--seconds`` long, with live events appended at
``--live-rate`` per second to destination LIVE:

1. baseline: live traffic only;
2. replay: ``start_replay`` starts replaying the whole hour to destination NEW (released at
   ``--replay-rate`` events/s, SWITCHBOARD_REPLAY_RATE's job; the request queues the first chunks,
   the worker the rest as the schedule runs short), and the same live traffic runs beside it.

Each round runs on a fresh database; prints, per round and as the median of ``--rounds`` (≥ 3) with
its spread and the load average, LIVE's receipt→delivery latency p50/p99 in both phases and their
ratio (beside the replay / without it), how fast the request answered and how many replayed events
were delivered per second. A round is bounded: seeding plus two phases of ``--seconds`` (the
replay is not waited for).

Usage: .venv/bin/python bench/replay.py [--events 100000] [--seconds 8] [--live-rate 100] [--replay-rate 200] [--rounds 3] [--postgres]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import select  # noqa: E402

from delivery_flow import RunningService  # noqa: E402
from delivery_vendor import make_event  # noqa: E402
from pgserver import free_port, postgres_server, wait_for_port  # noqa: E402
from rounds import MIN_ROUNDS, Figure, header, load  # noqa: E402
from server.catalog import load_catalog  # noqa: E402
from server.delivery.router import route  # noqa: E402
from server.delivery.history import start_replay  # noqa: E402
from server.store import delivery as store  # noqa: E402
from server.store import events, fanout, open_store, replays, workspace  # noqa: E402
from server.store.engine import read_only  # noqa: E402


def seed(engine, source_id: int, count: int) -> None:
    when = datetime.now(timezone.utc) - timedelta(hours=1)
    for start in range(0, count, 2000):
        items = [make_event("track", event="Old", properties={"n": n}) for n in range(start, min(count, start + 2000))]
        events.append(engine, events.rows_for(source_id, when, items), dedupe_window=86400)
    fanout.ensure_cursor(engine)
    gaps = fanout.GapTracker()
    catalog = load_catalog()
    while fanout.fanout_pass(engine, lambda event, kind, dests: route(event, kind, True, dests, catalog), gaps,
                             limit=5000)[0]:
        pass  # no destinations yet: the cursor moves past the history, no jobs


def live_phase(engine, source_id: int, seconds: float, rate: float) -> list[int]:
    """Append one live event every 1/rate s for ``seconds``; return their event ids."""
    ids, interval, start = [], 1.0 / rate, time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n * interval
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        events.append(engine, events.rows_for(source_id, datetime.now(timezone.utc), [make_event("track", event="Live")]),
                      dedupe_window=86400)
        n += 1
    with read_only(engine) as conn:
        ids = list(conn.execute(select(events.events.c.id).where(events.events.c.source_id == source_id,
                                                                  events.events.c.payload.contains('"Live"'))).scalars())
    return ids


def latencies(engine, destination_id: int, event_ids: list[int], wait: float = 10.0) -> list[float]:
    deadline = time.monotonic() + wait
    while True:
        with read_only(engine) as conn:
            rows = conn.execute(select(store.delivery_jobs.c.latency_ms).where(
                store.delivery_jobs.c.destination_id == destination_id,
                store.delivery_jobs.c.event_id.in_(event_ids),
                store.delivery_jobs.c.status == store.DELIVERED)).scalars().all()
        if len(rows) >= len(event_ids) or time.monotonic() > deadline:
            return sorted(rows)
        time.sleep(0.1)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def delivered_replay(engine, destination_id: int) -> int:
    with read_only(engine) as conn:
        return len(conn.execute(select(store.delivery_jobs.c.id).where(
            store.delivery_jobs.c.destination_id == destination_id, store.delivery_jobs.c.replay_id.is_not(None),
            store.delivery_jobs.c.status == store.DELIVERED)).all())


def run(url: str, args) -> dict[str, float]:
    """One round on a fresh database: LIVE's latencies without and with the replay running."""
    engine = open_store(url)
    catalog = load_catalog()
    source = workspace.create_source(engine, "Bench")
    t0 = time.monotonic()
    seed(engine, source["id"], args.events)
    print(f"  seeded {args.events} events in {time.monotonic() - t0:.1f}s", flush=True)
    port = free_port()
    # The receiver in its own process (bench/deliver.py's): in this one it would share the GIL.
    receiver = subprocess.Popen([sys.executable, "bench/deliver.py", "--receiver", str(port)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}/ok"
        live = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                         settings={"url": url})
        new = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                        settings={"url": url})
        with RunningService(engine, catalog, poll_interval=0.05, replay_rate=args.replay_rate):
            base_ids = live_phase(engine, source["id"], args.seconds, args.live_rate)
            base = latencies(engine, live["id"], base_ids)
            started = time.monotonic()
            answer = start_replay(engine, catalog, new["id"], since=datetime.now(timezone.utc) - timedelta(hours=2),
                                  until=None, rate=args.replay_rate, actor="bench")
            answered = time.monotonic() - started
            during_ids = [i for i in live_phase(engine, source["id"], args.seconds, args.live_rate)
                          if i not in set(base_ids)]
            elapsed = time.monotonic() - started
            replayed = delivered_replay(engine, new["id"])
            during = latencies(engine, live["id"], during_ids)
            queued = replays.get_replay(engine, answer["replay_id"])["queued"]
    finally:
        receiver.terminate()
        receiver.wait(10)
    engine.dispose()
    result = {"base_p50": pct(base, .5), "base_p99": pct(base, .99), "p50": pct(during, .5), "p99": pct(during, .99),
              "answered": answered, "first": answer["queued"], "queued": queued, "replayed_per_s": replayed / elapsed}
    result["ratio_p50"], result["ratio_p99"] = result["p50"] / result["base_p50"], result["p99"] / result["base_p99"]
    print(f"  LIVE p50/p99 {result['base_p50']:.1f}/{result['base_p99']:.1f} ms without the replay, "
          f"{result['p50']:.1f}/{result['p99']:.1f} ms beside it ({result['ratio_p50']:.2f}x / {result['ratio_p99']:.2f}x); "
          f"the request answered in {answered:.2f}s ({answer['queued']} queued), {queued} queued after "
          f"{args.seconds:g}s, {replayed / elapsed:.0f} replayed events/s; {load()}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--live-rate", type=float, default=100.0)
    parser.add_argument("--replay-rate", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    header(f"bench/replay.py: LIVE (100 events/s) beside a {args.events:,}-event replay at {args.replay_rate:g}/s "
           f"({'PostgreSQL' if args.postgres else 'SQLite'}, {args.seconds:g} s phases)")
    results = []
    with (postgres_server() if args.postgres else nullcontext()) as pg:
        for index in range(max(args.rounds, MIN_ROUNDS)):
            with tempfile.TemporaryDirectory() as tmp:
                print(f"round {index + 1}", flush=True)
                results.append(run(pg.create_database() if pg else f"sqlite:///{tmp}/bench.db", args))
    def figure(key: str, fmt: str) -> str:
        return Figure([r[key] for r in results], [load()]).text(fmt)
    print(f"LIVE p50 without the replay: {figure('base_p50', '{:.1f} ms')}")
    print(f"LIVE p50 beside the replay:  {figure('p50', '{:.1f} ms')}")
    print(f"LIVE p99 without the replay: {figure('base_p99', '{:.1f} ms')}")
    print(f"LIVE p99 beside the replay:  {figure('p99', '{:.1f} ms')}")
    print(f"ratio beside/without, p50:   {figure('ratio_p50', '{:.2f}x')}")
    print(f"ratio beside/without, p99:   {figure('ratio_p99', '{:.2f}x')}")
    print(f"replayed events delivered:   {figure('replayed_per_s', '{:.0f}/s')} (rate setting {args.replay_rate:g}/s)")
    print(f"the request answered in:     {figure('answered', '{:.2f} s')}")


if __name__ == "__main__":
    main()

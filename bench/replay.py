"""History replay vs live traffic: does a 100k-event replay to a new destination slow down live
delivery to another destination? (docs/delivery.md, "History replay")

One process with real SQLite (or ``--postgres``) and a real DeliveryService, and a loopback webhook
receiver in its own process. The source's log holds ``--events`` (100,000) events received an hour
ago; live events are appended at ``--live-rate`` per second and go to destinations LIVE and NEW.
Each round, on the same database and machine:

1. without: live traffic only, ``--seconds``/2;
2. beside: ``start_replay`` starts replaying the whole hour to NEW (released at ``--replay-rate``
   events/s, SWITCHBOARD_REPLAY_RATE's job; the request queues the first chunks, the worker the rest
   as the schedule runs short) and the same live traffic runs beside it, ``--seconds``;
3. without again: the replay is stopped (its unsent jobs skipped), ``--seconds``/2 — so that the
   machine's drift (it is shared) falls on both sides of the comparison.

Prints per round, and as the median of ``--rounds`` (≥ 3) with its spread and the load average,
LIVE's receipt→delivery latency p50/p99 without and beside the replay and their ratio, how fast
the request answered and how many replayed events were delivered per second. Target (issue 16):
the median round's LIVE p50 and p99 beside the replay lie within their normal range, the
min–max the rounds without the replay measured on the same machine in the same run.

Usage: .venv/bin/python bench/replay.py [--events 100000] [--seconds 8] [--live-rate 100] [--replay-rate 200] [--rounds 3] [--postgres]
"""

from __future__ import annotations

import argparse
import statistics
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
from rounds import MIN_ROUNDS, Figure, count as round_count, header, load  # noqa: E402
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


def delivered_replay(engine, destination_id: int, replay_id: int) -> int:
    with read_only(engine) as conn:
        return len(conn.execute(select(store.delivery_jobs.c.id).where(
            store.delivery_jobs.c.destination_id == destination_id, store.delivery_jobs.c.replay_id == replay_id,
            store.delivery_jobs.c.status == store.DELIVERED)).all())


def stop_replay(engine, replay_id: int) -> None:
    """End a replay early (a bench's doing, no feature): its unsent jobs are skipped, its
    queueing and its place in the release schedule end, so the next phase runs without it."""
    with store.write_transaction(engine) as conn:
        conn.execute(store.delivery_jobs.update().where(
            store.delivery_jobs.c.replay_id == replay_id, store.delivery_jobs.c.status.in_(store.PENDING),
        ).values(status=store.SKIPPED, finished_at=store.utcnow(), lease_until=None, lease_owner=None))
        conn.execute(replays.replays.update().where(replays.replays.c.id == replay_id).values(
            state="queued", release_until=None))
        conn.execute(store.delivery_cursors.delete().where(store.delivery_cursors.c.name.like(f"replay:{replay_id}%")))


def run(url: str, args) -> list[dict[str, float]]:
    """Rounds on one database: each measures LIVE without the replay, beside it, and without it
    again (the replay stopped), so that the machine's drift falls on both sides."""
    engine = open_store(url)
    catalog = load_catalog()
    source = workspace.create_source(engine, "Bench")
    t0 = time.monotonic()
    seed(engine, source["id"], args.events)
    print(f"seeded {args.events} events in {time.monotonic() - t0:.1f}s", flush=True)
    port = free_port()
    # The receiver in its own process (bench/deliver.py's): in this one it would share the GIL.
    receiver = subprocess.Popen([sys.executable, "bench/deliver.py", "--receiver", str(port)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}/ok"
        live = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                         settings={"url": url})
        new = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                        settings={"url": url})
        with RunningService(engine, catalog, poll_interval=0.05, replay_rate=args.replay_rate):
            live_phase(engine, source["id"], 2, args.live_rate)  # warm up
            for index in range(round_count(args.rounds)):
                results.append(one_round(engine, catalog, source["id"], live["id"], new["id"], args))
                print(f"round {index + 1}: {describe(results[-1], args)}", flush=True)
    finally:
        receiver.terminate()
        receiver.wait(10)
    engine.dispose()
    return results


def one_round(engine, catalog, source_id: int, live_id: int, new_id: int, args) -> dict[str, float]:
    half = args.seconds / 2
    seen: set[int] = set()

    cpu: dict[str, float] = {"without": 0.0, "beside": 0.0}

    def phase(seconds: float, kind: str = "without") -> list[int]:
        began, used = time.monotonic(), time.process_time()
        ids = [i for i in live_phase(engine, source_id, seconds, args.live_rate) if i not in seen]
        cpu[kind] += (time.process_time() - used) / (time.monotonic() - began) / (1 if kind == "beside" else 2)
        seen.update(ids)
        return ids

    seen.update(live_phase(engine, source_id, 0.1, args.live_rate))
    before = phase(half)
    started = time.monotonic()
    answer = start_replay(engine, catalog, new_id, since=datetime.now(timezone.utc) - timedelta(hours=2),
                          until=None, rate=args.replay_rate, actor="bench")
    answered = time.monotonic() - started
    during = phase(args.seconds, "beside")
    elapsed = time.monotonic() - started
    replayed = delivered_replay(engine, new_id, answer["replay_id"])
    queued = replays.get_replay(engine, answer["replay_id"])["queued"]
    stop_replay(engine, answer["replay_id"])
    time.sleep(0.5)  # the replay's last sends finish
    after = phase(half)
    base = latencies(engine, live_id, before + after)
    beside = latencies(engine, live_id, during)
    result = {"base_p50": pct(base, .5), "base_p99": pct(base, .99), "p50": pct(beside, .5), "p99": pct(beside, .99),
              "answered": answered, "first": answer["queued"], "queued": queued, "replayed_per_s": replayed / elapsed,
              "cpu_without": cpu["without"], "cpu_beside": cpu["beside"]}
    result["ratio_p50"], result["ratio_p99"] = result["p50"] / result["base_p50"], result["p99"] / result["base_p99"]
    return result


def describe(result: dict[str, float], args) -> str:
    return (f"LIVE p50/p99 {result['base_p50']:.1f}/{result['base_p99']:.1f} ms without the replay, "
            f"{result['p50']:.1f}/{result['p99']:.1f} ms beside it ({result['ratio_p50']:.2f}x / {result['ratio_p99']:.2f}x); "
            f"the request answered in {result['answered']:.2f}s ({result['first']:.0f} queued), {result['queued']:.0f} "
            f"queued after {args.seconds:g}s, {result['replayed_per_s']:.0f} replayed events/s; process CPU "
            f"{result['cpu_without']:.0%} without, {result['cpu_beside']:.0%} beside; {load()}")


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
    with tempfile.TemporaryDirectory() as tmp, (postgres_server() if args.postgres else nullcontext()) as pg:
        results = run(pg.create_database() if pg else f"sqlite:///{tmp}/bench.db", args)

    def figure(key: str, fmt: str) -> str:
        return Figure([r[key] for r in results], [load()]).text(fmt)
    print(f"LIVE p50 without the replay: {figure('base_p50', '{:.1f} ms')}")
    print(f"LIVE p50 beside the replay:  {figure('p50', '{:.1f} ms')}")
    print(f"LIVE p99 without the replay: {figure('base_p99', '{:.1f} ms')}")
    print(f"LIVE p99 beside the replay:  {figure('p99', '{:.1f} ms')}")
    print(f"ratio beside/without, p50:   {figure('ratio_p50', '{:.2f}x')}")
    print(f"ratio beside/without, p99:   {figure('ratio_p99', '{:.2f}x')}")
    # The target (issue 16): LIVE's latency beside the replay stays within its normal range, i.e.
    # within what the rounds without the replay measured (their min–max), for the median round.
    for key, base in (("p50", "base_p50"), ("p99", "base_p99")):
        low, high = min(r[base] for r in results), max(r[base] for r in results)
        beside = statistics.median(r[key] for r in results)
        verdict = "within" if beside <= high else "ABOVE"
        print(f"target: LIVE {key} beside the replay within its normal range: median {beside:.1f} ms, normal range "
              f"{low:.1f}–{high:.1f} ms (the rounds without it): {verdict}")
    print(f"replayed events delivered:   {figure('replayed_per_s', '{:.0f}/s')} (rate setting {args.replay_rate:g}/s)")
    print(f"the request answered in:     {figure('answered', '{:.2f} s')}")
    print(f"process CPU without/beside:  {figure('cpu_without', '{:.0%}')} / {figure('cpu_beside', '{:.0%}')}")


if __name__ == "__main__":
    main()

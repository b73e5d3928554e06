"""Cloud-mode delivery benchmark: collector → event log → delivery → a local webhook receiver.

Runs a real ``switchboard serve`` (collector + delivery workers in one process, SQLite by default,
``--postgres`` for a throwaway PostgreSQL) and a receiver process (uvicorn) that answers 200 on
``/ok`` and never answers on ``/hang``. Measures:

1. throughput: events/s posted to ``/v1/batch`` and delivered to the receiver, against a baseline:
   the receiver hit directly by a plain httpx client, 16 requests in flight (on httpx's own
   transport, and on ours: ``server/delivery/transport.py``);
2. receipt→delivery latency p50/p99 at a paced 1,000 events/s (target p99 ≤ 250 ms);
3. isolation: a healthy destination's delivered events/s alone vs. beside a hanging one
   (target: within 10 %), alternating on fresh servers so both see the same machine load;
4. for context: latency at a lower paced rate (``--low-rate``, 200/s), and throughput and
   1,000/s latency with webhook batching (``batch_size`` 20: one request per 20 events), and
   1,000/s latency with delivery in a separate ``switchboard worker`` process.

5. delivery per worker (issue #18's targets: ≥ 5,000 events/s one request per event, ≥ 10,000
   batched): events are ingested first, then one ``switchboard worker`` process drains them
   against ``bench/transport.py``'s cheap receiver; printed with the worker's CPU per event (on a
   shared machine, events/s per busy core is the steadier figure).

Every phase runs ``--rounds`` times (≥ 3); each row is the median with its spread (min–max) and
the load average (bench/rounds.py).

Usage: .venv/bin/python bench/deliver.py [--postgres] [--events 2000] [--rounds 3] [--paced-seconds 5]
       [--worker-events 10000] [--worker-only]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from pgserver import free_port, postgres_server, wait_for_port  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402
from server.delivery.transport import HTTP11Transport  # noqa: E402
from server.store import delivery as store  # noqa: E402
from server.store import open_store, workspace  # noqa: E402
from server.store.engine import read_only  # noqa: E402


# ---------------------------------------------------------------- the receiver (its own process)


async def receiver_app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["path"] == "/hang":
        await asyncio.sleep(3600)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def run_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(receiver_app, host="127.0.0.1", port=port, log_level="error",
                access_log=False, limit_concurrency=10_000)


# ---------------------------------------------------------------- helpers


def start(args: list[str], env: dict[str, str] | None = None, log=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=log)


def delivered(engine, destination_id: int) -> int:
    with read_only(engine) as conn:
        return conn.execute(
            select(func.count()).select_from(store.delivery_jobs).where(
                store.delivery_jobs.c.destination_id == destination_id,
                store.delivery_jobs.c.status == store.DELIVERED)
        ).scalar_one()


def latencies(engine, destination_id: int) -> list[float]:
    with read_only(engine) as conn:
        return sorted(conn.execute(
            select(store.delivery_jobs.c.latency_ms).where(
                store.delivery_jobs.c.destination_id == destination_id,
                store.delivery_jobs.c.status == store.DELIVERED)
        ).scalars())


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, int(q * len(values) + 0.999999) - 1))] if values else float("nan")


def batch(n: int, tag: str) -> list[dict]:
    return [{"type": "track", "event": "Bench", "userId": f"u{i % 50}", "messageId": f"{tag}-{uuid.uuid4().hex}",
             "properties": {"i": i, "tag": tag}} for i in range(n)]


async def post_all(url: str, write_key: str, total: int, size: int = 100, parallel: int = 8) -> float:
    """Post ``total`` events as fast as the collector takes them; return seconds."""
    async with httpx.AsyncClient(timeout=30) as client:
        queue = list(range(0, total, size))
        started = time.perf_counter()

        async def worker():
            while queue:
                queue.pop()
                answer = await client.post(f"{url}/v1/batch", json={"writeKey": write_key, "batch": batch(size, "t")})
                answer.raise_for_status()

        await asyncio.gather(*[worker() for _ in range(parallel)])
        return time.perf_counter() - started


async def post_paced(url: str, write_key: str, rate: int, seconds: float, tick: float = 0.01) -> int:
    """Post ``rate`` events/s in small batches every ``tick`` seconds; return how many were sent."""
    per_tick = max(1, int(rate * tick))
    sent = 0
    async with httpx.AsyncClient(timeout=30) as client:
        tasks = []
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            tasks.append(asyncio.create_task(
                client.post(f"{url}/v1/batch", json={"writeKey": write_key, "batch": batch(per_tick, "p")})))
            sent += per_tick
            n += 1
            await asyncio.sleep(max(0.0, started + n * tick - time.perf_counter()))
        for answer in await asyncio.gather(*tasks):
            answer.raise_for_status()
    return sent


async def direct_ceiling(receiver: str, total: int, parallel: int = 16, ours: bool = False) -> float:
    """Events/s the receiver takes when hit directly, one event per request, by a plain httpx
    client (on httpcore, or on our delivery transport with ``ours``)."""
    transport = HTTP11Transport() if ours else None
    async with httpx.AsyncClient(timeout=30, transport=transport) as client:
        bodies = batch(total, "d")
        started = time.perf_counter()

        async def worker(chunk):
            for body in chunk:
                (await client.post(f"{receiver}/ok", json=body)).raise_for_status()

        await asyncio.gather(*[worker(bodies[i::parallel]) for i in range(parallel)])
        return total / (time.perf_counter() - started)


def wait_delivered(engine, destination_id: int, count: int, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if delivered(engine, destination_id) >= count:
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"destination {destination_id}: only {delivered(engine, destination_id)}/{count} delivered")


# ---------------------------------------------------------------- the run


class Switchboard:
    """A fresh database with one source and its webhook destinations, and ``switchboard serve`` on it."""

    def __init__(self, db_url: str, urls: list[str], batch_size: int = 1, worker: bool = False,
                 delivery: bool = True):
        self.engine = open_store(db_url)
        self.source = workspace.create_source(self.engine, "bench")
        self.destinations = [
            workspace.add_destination(self.engine, self.source["id"], slug="webhooks", mode="cloud", enabled=True,
                                      settings={"url": url, "batch_size": batch_size})
            for url in urls
        ]
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {"SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_PORT": str(port), "SWITCHBOARD_HOST": "127.0.0.1",
               "SWITCHBOARD_LOG_LEVEL": "ERROR",
               "SWITCHBOARD_DELIVERY_WORKERS": "false" if worker or not delivery else "true",
               # the receiver is on 127.0.0.1, which the egress rules refuse by default
               "SWITCHBOARD_ALLOW_PRIVATE_EGRESS": "true"}
        log = open(Path(tempfile.gettempdir()) / "bench-deliver-serve.log", "a")
        self.processes = [start([sys.executable, "-m", "server.cli", "serve"], env, log=log)]
        if worker:  # delivery in its own process: the collector and delivery each get a core
            self.processes.append(start([sys.executable, "-m", "server.cli", "worker"], env, log=log))
        wait_for_port(port, 60)

    def close(self) -> None:
        if not self.processes:
            return
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes = []
        self.engine.dispose()  # (it still opens connections on demand)


def throughput(new_db, urls: list[str], events: int, batch_size: int = 1) -> tuple[float, float]:
    """(ingest events/s, delivered events/s of the first destination) on a fresh server."""
    board = Switchboard(new_db(), urls, batch_size)
    try:
        began = time.perf_counter()
        post_s = asyncio.run(post_all(board.url, board.source["write_key"], events))
        done = wait_delivered(board.engine, board.destinations[0]["id"], events)
        return events / post_s, events / (done - began)
    finally:
        board.close()


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_backlog(db_url: str, receiver: str, events: int, batch_size: int = 1) -> tuple[float, float]:
    """Delivery per worker: ``events`` are ingested first (no worker running), then one
    ``switchboard worker`` process drains them. Returns (events/s delivered, the worker's CPU µs
    per event), counted from when the worker says it is running (its start-up excluded)."""
    board = Switchboard(db_url, [receiver + "/ok"], batch_size, worker=False, delivery=False)
    try:
        asyncio.run(post_all(board.url, board.source["write_key"], events))
    finally:
        board.close()
    env = {"SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_LOG_LEVEL": "ERROR",
           "SWITCHBOARD_ALLOW_PRIVATE_EGRESS": "true"}
    worker = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], cwd=ROOT,
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        worker.stdout.readline()  # "switchboard worker … delivering from …": started
        began, cpu, already = time.perf_counter(), _cpu_seconds(worker.pid), delivered(board.engine,
                                                                                         board.destinations[0]["id"])
        done = wait_delivered(board.engine, board.destinations[0]["id"], events)
        cpu = _cpu_seconds(worker.pid) - cpu
        return (events - already) / (done - began), cpu / (events - already) * 1e6
    finally:
        worker.terminate()
        worker.wait(20)
        board.engine.dispose()


def paced_latency(new_db, receiver: str, seconds: float, rate: int = 1000, batch_size: int = 1,
                  worker: bool = False) -> list[float]:
    board = Switchboard(new_db(), [receiver + "/ok"], batch_size, worker)
    try:
        sent = asyncio.run(post_paced(board.url, board.source["write_key"], rate, seconds))
        wait_delivered(board.engine, board.destinations[0]["id"], sent)
        return latencies(board.engine, board.destinations[0]["id"])
    finally:
        board.close()


def run(new_db, args) -> None:
    # Two receivers: the healthy vendor, and another vendor (its own host) that never answers.
    receiver_port, other_port = free_port(), free_port()
    receiver, hanging = f"http://127.0.0.1:{receiver_port}", f"http://127.0.0.1:{other_port}/hang"
    fast_port = free_port()  # the per-worker phases: bench/transport.py's cheaper receiver
    processes = [start([sys.executable, "bench/deliver.py", "--receiver", str(port)])
                 for port in (receiver_port, other_port)]
    processes.append(start([sys.executable, "bench/transport.py", "--receiver", str(fast_port)]))
    try:
        wait_for_port(receiver_port, 30)
        wait_for_port(other_port, 30)
        wait_for_port(fast_port, 30)
        fast = f"http://127.0.0.1:{fast_port}"
        per_worker = {size: [worker_backlog(new_db(), fast, args.worker_events, size) for _ in range(args.rounds)]
                      for size in (1, 20)}
        if args.worker_only:
            print_per_worker(per_worker, args)
            return
        # Every phase runs once per round. Alone and beside alternate, each on a fresh server and
        # database, so that both see the same machine load; each row is the median of the rounds.
        names = ("ceiling", "ours_ceiling", "ingest", "alone", "beside", "paired", "lat50", "lat99", "latmax",
                 "slow50", "slow99", "batched_rate", "batched50", "batched99", "split50", "split99")
        f = {name: Figure([]) for name in names}

        def note(**values: float) -> None:
            for name, value in values.items():
                f[name].values.append(value)
                f[name].loads.append(load())

        other_ok = hanging.replace("/hang", "/ok")
        for number in range(args.rounds):
            note(ceiling=asyncio.run(direct_ceiling(receiver, 2000)),
                 ours_ceiling=asyncio.run(direct_ceiling(receiver, 2000, ours=True)))
            rate_in, rate = throughput(new_db, [receiver + "/ok"], args.events)
            note(ingest=rate_in, alone=rate,
                 beside=throughput(new_db, [receiver + "/ok", hanging], args.events)[1],
                 paired=throughput(new_db, [receiver + "/ok", other_ok], args.events)[1])
            lat = paced_latency(new_db, receiver, args.paced_seconds)
            slow = paced_latency(new_db, receiver, args.paced_seconds, rate=args.low_rate)
            batched = paced_latency(new_db, receiver, args.paced_seconds, batch_size=20)
            split = paced_latency(new_db, receiver, args.paced_seconds, worker=True)
            note(lat50=pct(lat, 0.5), lat99=pct(lat, 0.99), latmax=max(lat),
                 slow50=pct(slow, 0.5), slow99=pct(slow, 0.99),
                 batched_rate=throughput(new_db, [receiver + "/ok"], args.events, batch_size=20)[1],
                 batched50=pct(batched, 0.5), batched99=pct(batched, 0.99),
                 split50=pct(split, 0.5), split99=pct(split, 0.99))
            print(f"  round {number + 1}: delivered {rate:,.0f} events/s alone, "
                  f"{f['beside'].values[-1]:,.0f} beside a hanging one; paced p99 {f['lat99'].values[-1]:.0f} ms "
                  f"({load()})", flush=True)
    finally:
        for process in processes:
            process.kill()  # the hanging requests are still open: no graceful stop
            process.wait(15)
    m = {name: figure.median for name, figure in f.items()}
    rate_fmt, ms_fmt = "{:,.0f}", "{:.0f}"

    def pair(low: str, high: str) -> str:
        return f"{f[low].spread(ms_fmt)} / {f[high].spread(ms_fmt)}"

    rows = [
        ("receiver hit directly by an httpx AsyncClient, 16 in flight (baseline), events/s",
         f["ceiling"].spread(rate_fmt), "1.00"),
        ("the same client on our delivery transport (transport.py), events/s", f["ours_ceiling"].spread(rate_fmt),
         f"{m['ours_ceiling'] / m['ceiling']:.2f} of baseline"),
        ("collector ingest (/v1/batch, 100 per batch), events/s", f["ingest"].spread(rate_fmt),
         f"{m['ingest'] / m['ceiling']:.2f} of baseline"),
        ("collector → webhook delivered, events/s", f["alone"].spread(rate_fmt),
         f"{m['alone'] / m['ceiling']:.2f} of baseline"),
        ("healthy beside a hanging destination, events/s", f["beside"].spread(rate_fmt),
         f"{m['beside'] / m['alone']:.2f} of alone (target ≥ 0.90)"),
        ("healthy beside another healthy destination, events/s", f["paired"].spread(rate_fmt),
         f"{m['paired'] / m['alone']:.2f} of alone; hanging vs healthy neighbour {m['beside'] / m['paired']:.2f}"),
        (f"paced 1,000 events/s × {args.paced_seconds:g}s: p50 receipt→delivery, ms", f["lat50"].spread("{:.1f}"), ""),
        (f"paced 1,000 events/s × {args.paced_seconds:g}s: p99 receipt→delivery, ms", f["lat99"].spread("{:.1f}"),
         f"{m['lat99'] / 250:.2f} of the 250 ms target"),
        ("paced: max receipt→delivery, ms", f["latmax"].spread("{:.1f}"), ""),
        (f"paced {args.low_rate:,} events/s: p50 / p99 receipt→delivery, ms", pair("slow50", "slow99"),
         f"p99 {m['slow99'] / 250:.2f} of 250 ms"),
        ("webhook batch_size 20: delivered, events/s", f["batched_rate"].spread(rate_fmt),
         f"{m['batched_rate'] / m['alone']:.2f} of unbatched"),
        ("webhook batch_size 20, paced 1,000 events/s: p50 / p99, ms", pair("batched50", "batched99"),
         f"p99 {m['batched99'] / 250:.2f} of 250 ms"),
        ("delivery in a separate `switchboard worker`, paced 1,000 events/s: p50 / p99, ms", pair("split50", "split99"),
         f"p99 {m['split99'] / 250:.2f} of 250 ms"),
    ]
    print_per_worker(per_worker, args)
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\nswitchboard delivery benchmark — {database}, {os.cpu_count()} CPUs, {load()} after the rounds, "
          f"median (min–max) of {args.rounds} rounds of {args.events} events\n")
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>{value_width}}  ratio (of the medians)")
    print("-" * (width + value_width + 44))
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {ratio}")
    print(f"\nper round: alone {', '.join(f'{r:,.0f}' for r in f['alone'].values)}; "
          f"beside a hanging one {', '.join(f'{r:,.0f}' for r in f['beside'].values)}; "
          f"beside a healthy one {', '.join(f'{r:,.0f}' for r in f['paired'].values)} events/s")


def print_per_worker(per_worker: dict[int, list[tuple[float, float]]], args) -> None:
    """Delivery per worker: one `switchboard worker` draining a backlog (ingested before it started)."""
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\none `switchboard worker` draining {args.worker_events:,} ingested events — {database}, "
          f"{os.cpu_count()} CPUs, {load()}, {args.rounds} rounds, medians (min–max)")
    for size, target in ((1, 5000), (20, 10000)):
        rates = Figure([r for r, _ in per_worker[size]])
        cpus = Figure([c for _, c in per_worker[size]])
        rate, cpu = rates.median, cpus.median
        what = "one request per event" if size == 1 else f"webhook batch_size {size}"
        print(f"  {what}: {rates.spread('{:,.0f}')} events/s, {rate / target:.2f} of the "
              f"{target:,}/s target; worker CPU {cpus.spread('{:.0f}')} µs/event = {1e6 / cpu:,.0f} events/s per "
              f"busy core ({1e6 / cpu / target:.2f} of target)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL instead of SQLite")
    parser.add_argument("--events", type=int, default=2000, help="events per throughput phase (default 2000)")
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="length of each paced phase (default 5 s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every phase, medians (min–max) printed (default 3, at least 3)")
    parser.add_argument("--worker-events", type=int, default=10000,
                        help="events per per-worker backlog phase (default 10000)")
    parser.add_argument("--worker-only", action="store_true", help="run only the per-worker phases")
    parser.add_argument("--low-rate", type=int, default=200, help="a second paced rate, for context (default 200)")
    args = parser.parse_args()
    if args.receiver:
        run_receiver(args.receiver)
        return
    args.rounds = round_count(args.rounds)
    header(f"bench/deliver.py: cloud-mode delivery, {'PostgreSQL' if args.postgres else 'SQLite'}, "
           f"{args.rounds} rounds")
    if args.postgres:
        with postgres_server() as pg:
            run(pg.create_database, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            counter = iter(range(1000))
            run(lambda: f"sqlite:///{tmp}/bench-{next(counter)}.db", args)


if __name__ == "__main__":
    main()

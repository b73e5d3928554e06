"""Fan-out cost against the number of destinations: one source with 10 vs 100 webhook destinations.

Each round is a fresh database with one source and N cloud ``webhooks`` destinations, all pointing
at one real loopback receiver (``bench/deliver.py``'s, its own process: 200 on ``/ok``), a
``switchboard serve`` with its delivery workers off (the collector) and a ``switchboard worker``
(delivery, its own process, so its CPU is delivery's alone). Events are posted to ``/v1/batch``
and the round ends when every job is delivered.

Both sides do the **same total work**: ``--jobs`` deliveries (default 20,000), i.e. 2,000 events
× 10 destinations against 200 events × 100 destinations. Reported per side:

- delivered jobs/s (first post → last job delivered), and
- the worker's CPU per delivered job (user + system, all threads, from /proc), in µs.

Rounds alternate (10, 100, 10, 100, …) so both see the same machine load; each figure is the
median of ``--rounds`` (≥ 3) with its spread and the load average (``bench/rounds.py``). The
ratio 100/10 of the medians is printed beside the target (issue #20: ≥ 0.9 of the jobs/s).

    .venv/bin/python bench/fanout.py [--postgres] [--jobs 20000] [--rounds 3] [--counts 10,100]
    .venv/bin/python bench/fanout.py --profile 100      # py-spy the worker with 100 destinations
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
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
from server.store import delivery as store  # noqa: E402
from server.store import open_store, workspace  # noqa: E402
from server.store.engine import read_only  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, **kw)


def delivered(engine) -> int:
    with read_only(engine) as conn:
        return conn.execute(select(func.count()).select_from(store.delivery_jobs)
                            .where(store.delivery_jobs.c.status == store.DELIVERED)).scalar_one()


async def post_all(url: str, write_key: str, total: int, size: int = 100, parallel: int = 4) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        sizes = [min(size, total - i) for i in range(0, total, size)]

        async def worker():
            while sizes:
                n = sizes.pop()
                batch = [{"type": "track", "event": "Fanout", "userId": f"u{i % 50}",
                          "messageId": f"f-{uuid.uuid4().hex}", "properties": {"i": i}} for i in range(n)]
                (await client.post(f"{url}/v1/batch", json={"writeKey": write_key, "batch": batch})).raise_for_status()

        await asyncio.gather(*[worker() for _ in range(parallel)])


class Round:
    """A fresh database, one source with ``count`` webhook destinations, a collector and a worker."""

    def __init__(self, db_url: str, receiver: str, count: int, profile: str | None = None):
        self.engine = open_store(db_url)
        self.source = workspace.create_source(self.engine, "fanout")
        for i in range(count):
            workspace.add_destination(self.engine, self.source["id"], slug="webhooks", mode="cloud", enabled=True,
                                      settings={"url": f"{receiver}/ok?d={i}"})
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {"SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_PORT": str(port), "SWITCHBOARD_HOST": "127.0.0.1",
               "SWITCHBOARD_LOG_LEVEL": "ERROR", "SWITCHBOARD_DELIVERY_WORKERS": "false",
               "SWITCHBOARD_ALLOW_PRIVATE_EGRESS": "true"}  # the receiver is on 127.0.0.1
        log = open(Path(tempfile.gettempdir()) / "bench-fanout.log", "a")
        self.collector = start([sys.executable, "-m", "server.cli", "serve"], env,
                               stdout=subprocess.DEVNULL, stderr=log)
        self.worker = start([sys.executable, "-m", "server.cli", "worker"], env, stdout=subprocess.PIPE, stderr=log)
        self.worker.stdout.readline()  # "switchboard worker … delivering from …": its planes are up
        self.profiler = None
        if profile:
            self.profiler = start([shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy",
                                   "record", "--pid", str(self.worker.pid), "--format", "raw", "--rate", "200", "--gil",
                                   "--output", profile], {}, stdout=subprocess.DEVNULL, stderr=log)
            time.sleep(1.0)
        wait_for_port(port, 60)

    def run(self, jobs: int, count: int, timeout: float = 300) -> tuple[float, float]:
        """(delivered jobs/s, worker CPU µs per job) for ``jobs // count`` events."""
        events = jobs // count
        cpu_before = cpu_seconds(self.worker.pid)
        began = time.perf_counter()
        asyncio.run(post_all(self.url, self.source["write_key"], events))
        deadline = time.monotonic() + timeout
        while (done := delivered(self.engine)) < events * count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {done}/{events * count} jobs delivered")
            time.sleep(0.05)
        seconds = time.perf_counter() - began
        cpu = cpu_seconds(self.worker.pid) - cpu_before
        return events * count / seconds, cpu / (events * count) * 1e6

    def close(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(2)  # SIGINT: py-spy writes its output
            self.profiler.wait(60)
        for process in (self.worker, self.collector):
            process.terminate()
        for process in (self.worker, self.collector):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.engine.dispose()


def run(new_db, args) -> None:
    port = free_port()
    receiver = f"http://127.0.0.1:{port}"
    process = start([sys.executable, "bench/deliver.py", "--receiver", str(port)], {},
                    stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30)
        if args.profile:
            board = Round(new_db(), receiver, args.profile, profile=args.profile_output)
            try:
                rate, cpu = board.run(args.jobs, args.profile)
            finally:
                board.close()
            print(f"profiled {args.profile} destinations: {rate:,.0f} jobs/s, {cpu:.0f} µs CPU/job; "
                  f"py-spy raw stacks in {args.profile_output}")
            return
        counts = [int(c) for c in args.counts.split(",")]
        rates = {c: Figure([]) for c in counts}
        cpus = {c: Figure([]) for c in counts}
        for _ in range(round_count(args.rounds)):
            for count in counts:
                board = Round(new_db(), receiver, count)
                try:
                    rate, cpu = board.run(args.jobs, count)
                finally:
                    board.close()
                rates[count].values.append(rate)
                rates[count].loads.append(load())
                cpus[count].values.append(cpu)
                cpus[count].loads.append(load())
                print(f"  {count} destinations: {rate:,.0f} jobs/s, {cpu:.0f} µs CPU/job ({load()})", flush=True)
    finally:
        process.kill()
        process.wait(15)
    low, high = counts[0], counts[-1]
    print(f"\n| destinations | events | delivered jobs/s | worker CPU per job |")
    print("|---|---|---|---|")
    for count in counts:
        print(f"| {count} | {args.jobs // count:,} | {rates[count].text('{:,.0f}')} | {cpus[count].text('{:.0f} µs')} |")
    rate_ratio = rates[high].median / rates[low].median
    cpu_ratio = cpus[high].median / cpus[low].median
    # Each round ran both sides back to back: its own ratio is the least disturbed by the load
    # of a shared machine drifting between rounds.
    paired = Figure([h / l for h, l in zip(rates[high].values, rates[low].values)], rates[high].loads)
    print(f"\n{high} vs {low} destinations (same {args.jobs:,} jobs): jobs/s ratio {rate_ratio:.2f} "
          f"of the medians, {paired.text('{:.2f}')} round by round (target ≥ 0.90); "
          f"CPU per job ratio {cpu_ratio:.2f} (flat = 1.00)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL instead of SQLite")
    parser.add_argument("--jobs", type=int, default=20_000, help="deliveries per round, on each side (default 20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, medians compared (default 3)")
    parser.add_argument("--counts", default="10,100", help="destination counts to compare (default 10,100)")
    parser.add_argument("--profile", type=int, help="one round with this many destinations under py-spy")
    parser.add_argument("--profile-output", default=str(Path(tempfile.gettempdir()) / "fanout.pyspy.txt"))
    args = parser.parse_args()
    database = "PostgreSQL" if args.postgres else "SQLite"
    header(f"bench/fanout.py: delivery fan-out, one source, {args.counts.replace(',', ' vs ')} webhook "
           f"destinations, {args.jobs:,} jobs per round, {database}")
    if args.postgres:
        with postgres_server() as pg:
            run(pg.create_database, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            counter = iter(range(os.getpid() * 1000, os.getpid() * 1000 + 1000))
            run(lambda: f"sqlite:///{tmp}/fanout-{next(counter)}.db", args)


if __name__ == "__main__":
    main()

"""Scale-out on one PostgreSQL: does a second process add throughput?

1. Ingest: durable events/s through the Tracking API (`/v1/batch`, 100 events per request) with
   one and with two `switchboard serve --role edge` processes on the same PostgreSQL. The load
   comes from wrk (one per server, a Lua script giving every event a fresh messageId) when it
   is installed, else from Python; every acknowledged event is checked to be stored.
0. Bundles: warm bundle req/s (wrk, Accept-Encoding: gzip) from `switchboard serve --role edge
   --workers 1` and `--workers 2` on one port (processes sharing it; SQLite is enough: the warm
   path does no I/O). `bench/scale.py --bundles` runs only this part.
2. Delivery: events/s from a stored backlog to a webhook receiver with one and with two
   `switchboard worker` processes (fan-out included).

Each row starts from a fresh database on a PostgreSQL this script starts (tests/pgserver.py)
and checks that every event was stored / delivered. The receiver is nginx answering 200 when
nginx is installed (so the receiver is not the bottleneck), else a Python HTTP server.
Each row runs ``--rounds`` times (≥ 3; one process and two alternate, so both see the same load)
and is printed as the median with its spread (min–max) and the load average (bench/rounds.py).

Run: .venv/bin/python bench/scale.py [--rounds 3] [--seconds 15] [--delivery-events 10000] [--bundles]
(about 4 minutes with 3 rounds; SCALE_SECONDS, SCALE_EVENTS and SCALE_DELIVERY_EVENTS set the defaults)
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
from pathlib import Path

import httpx
import orjson
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from pgserver import free_port, postgres_server, wait_for_port  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402
from scaleout_cluster import Process, Receiver, add_destination, create_source, make_batch, server, worker  # noqa: E402

from server.store import open_store  # noqa: E402
from server.store.delivery import DELIVERED, delivery_jobs  # noqa: E402
from server.store.events import events  # noqa: E402

INGEST_EVENTS = int(os.environ.get("SCALE_EVENTS", "100000"))  # without wrk: a fixed number of events
INGEST_SECONDS = int(os.environ.get("SCALE_SECONDS", "15"))  # with wrk: a fixed duration
WRK = shutil.which("wrk") is not None
DELIVERY_EVENTS = int(os.environ.get("SCALE_DELIVERY_EVENTS", "10000"))
BATCH = 100
CONCURRENCY = 32  # requests in flight, spread over the servers


# ---------------------------------------------------------------- a receiver that is not the bottleneck


class NginxReceiver:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-nginx-"))
        port = free_port()
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1; daemon off; pid {self.dir}/nginx.pid; error_log {self.dir}/error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {self.dir}/body;
  server {{ listen 127.0.0.1:{port}; keepalive_requests 100000; location / {{ return 200 "ok"; }} }} }}
""")
        self.process = subprocess.Popen(["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")])
        wait_for_port(port, 10)
        self.url = f"http://127.0.0.1:{port}/hook"

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def receiver():
    return (NginxReceiver(), "nginx") if shutil.which("nginx") else (Receiver(), "Python http.server")


# ---------------------------------------------------------------- load


async def _post_all(urls: list[str], write_key: str, bodies: list[bytes]) -> None:
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(auth=(write_key, ""), timeout=120, limits=limits) as client:
        async def run() -> None:
            while not queue.empty():
                index, body = queue.get_nowait()
                response = await client.post(f"{urls[index % len(urls)]}/v1/batch", content=body,
                                             headers={"Content-Type": "application/json"})
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(run() for _ in range(CONCURRENCY)))


WRK_SCRIPT = """
-- Each request: one /v1/batch of BATCH events with fresh messageIds (a repeat would be deduped).
local counter = 0
wrk.method = "POST"
wrk.path = "/v1/batch"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic %(auth)s"
request = function()
  local parts = {}
  for i = 1, %(batch)d do
    counter = counter + 1
    parts[i] = '{"type":"track","event":"Scale Test","messageId":"%(prefix)s-' .. counter ..
      '","anonymousId":"anon-' .. (counter %% 97) .. '","properties":{"i":' .. counter .. '}}'
  end
  return wrk.format(nil, nil, nil, '{"batch":[' .. table.concat(parts, ",") .. ']}')
end
"""


def wrk_load(urls: list[str], write_key: str, seconds: int, tag: str) -> int:
    """Run one wrk per server for ``seconds``; return the events acknowledged with 200."""
    import base64
    import re

    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    directory = Path(tempfile.mkdtemp(prefix="switchboard-wrk-"))
    runs = []
    for index, url in enumerate(urls):
        script = directory / f"batch{index}.lua"
        script.write_text(WRK_SCRIPT % {"auth": auth, "batch": BATCH, "prefix": f"{tag}-{index}"})
        runs.append(subprocess.Popen(
            ["wrk", "-t1", f"-c{CONCURRENCY // len(urls)}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url],
            stdout=subprocess.PIPE, text=True))
    acknowledged = 0
    for run in runs:
        out = run.communicate()[0]
        refused = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if run.returncode != 0 or refused:
            raise RuntimeError(f"wrk: some requests failed:\n{out}")
        acknowledged += int(re.search(r"(\d+) requests in", out).group(1)) * BATCH
    shutil.rmtree(directory, ignore_errors=True)
    return acknowledged


def bodies_for(total: int, tag: str) -> list[bytes]:
    return [orjson.dumps({"batch": make_batch(BATCH, f"{tag}{i}")}) for i in range(total // BATCH)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def backends(database: str) -> list[int]:
    """PostgreSQL backend processes serving ``database`` (their title names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f" {database} ".encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _client_cpu() -> float:
    """CPU time of this process plus its finished children (wrk runs as one)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Meter:
    """Wall time and the CPU time of our processes plus the database's backends over a run."""

    def __init__(self, pids: list[int], database: str):
        self.pids, self.database = pids, database

    def __enter__(self) -> "Meter":
        self.pg_pids = backends(self.database)
        self.cpu0, self.pg0 = cpu_seconds(self.pids), cpu_seconds(self.pg_pids)
        self.me0, self.machine0 = _client_cpu(), machine_busy()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.started
        self.cpu = cpu_seconds(self.pids) - self.cpu0
        self.me = _client_cpu() - self.me0  # the load generator (this process, or wrk)
        busy, total = machine_busy()
        self.busy = (busy - self.machine0[0]) / max(1, total - self.machine0[1])
        pg_pids = set(self.pg_pids) | set(backends(self.database))  # backends opened meanwhile count from 0
        self.pg = cpu_seconds(list(pg_pids)) - self.pg0


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


# ---------------------------------------------------------------- the two measurements


def ingest(pg, n_servers: int) -> float:
    url = pg.create_database()
    engine = open_store(url)
    # One uvicorn process each (`--workers 1`): with role edge, `serve` would otherwise start one per
    # core under a supervisor, so "1 process" was two, and the supervisor's CPU (nil) was metered.
    servers = [Process(["serve", "--workers", "1"], url, {"SWITCHBOARD_ROLE": "edge"}, port=free_port()).start()
               for _ in range(n_servers)]
    try:
        source = create_source(servers[0].url, "bench")
        asyncio.run(_post_all([s.url for s in servers], source["write_key"], bodies_for(2_000, "warm")))
        urls = [s.url for s in servers]
        with Meter([s.pid for s in servers], engine.url.database) as meter:
            if WRK:
                acknowledged = wrk_load(urls, source["write_key"], INGEST_SECONDS, f"i{n_servers}")
            else:
                acknowledged = INGEST_EVENTS
                asyncio.run(_post_all(urls, source["write_key"], bodies_for(INGEST_EVENTS, f"i{n_servers}-")))
        stored = count(engine, events) - 2_000
        # wrk stops counting at the deadline; answers still in flight then are stored but uncounted.
        assert acknowledged <= stored <= acknowledged + CONCURRENCY * BATCH, (acknowledged, stored)
        return Result(acknowledged, meter)
    finally:
        for process in servers:
            process.stop()
        engine.dispose()


def delivery(pg, n_workers: int, hook_url: str) -> float:
    url = pg.create_database()
    engine = open_store(url)
    # The receiver is on 127.0.0.1: internal addresses must be allowed (the egress rules refuse them).
    edge = server(url, "edge", SWITCHBOARD_ALLOW_PRIVATE_EGRESS="true").start()
    workers = []
    try:
        source = create_source(edge.url, "bench")
        destination = add_destination(edge.url, source["id"], "webhooks", {"url": hook_url})
        asyncio.run(_post_all([edge.url], source["write_key"], bodies_for(DELIVERY_EVENTS, f"d{n_workers}-")))
        edge.stop()  # nothing else touches the database while the workers run
        # each prints a line once delivering
        workers = [worker(url, SWITCHBOARD_ALLOW_PRIVATE_EGRESS="true").start() for _ in range(n_workers)]
        with Meter([w.pid for w in workers], engine.url.database) as meter:
            delivered = 0
            deadline = time.monotonic() + 600
            while delivered < DELIVERY_EVENTS:
                assert time.monotonic() < deadline, f"only {delivered} of {DELIVERY_EVENTS} delivered"
                time.sleep(0.05)
                delivered = count(engine, delivery_jobs, delivery_jobs.c.destination_id == destination["id"],
                                  delivery_jobs.c.status == DELIVERED)
        return Result(DELIVERY_EVENTS, meter)
    finally:
        for process in workers:
            process.stop()
        edge.stop()
        engine.dispose()


class Result:
    def __init__(self, events_done: int, meter: Meter):
        self.rate = events_done / meter.elapsed
        self.cpu_ms = meter.cpu * 1e6 / events_done  # our processes' CPU µs… per 1,000 events, in ms
        self.pg_ms = meter.pg * 1e6 / events_done
        self.client_ms = meter.me * 1e6 / events_done
        self.busy = meter.busy * 100


def bundle_rps(workers: int, seconds: int = 3, rounds: int = 3) -> list[float]:
    """Req/s of `serve --workers N` (role edge) for one warm bundle, one per wrk run."""
    from server.store import workspace

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bundles.db"
        engine = open_store(url)
        key = workspace.create_source(engine, "Bundles")["write_key"]
        engine.dispose()
        port = free_port()
        env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_PORT": str(port),
               "SWITCHBOARD_LOG_LEVEL": "WARNING", "SWITCHBOARD_ROLE": "edge"}
        proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--workers", str(workers)],
                                env=env, cwd=ROOT)
        try:
            wait_for_port(port, 60)
            link = f"http://127.0.0.1:{port}/analytics.js/v1/{key}/analytics.min.js"
            for _ in range(20):  # every process warm
                httpx.get(link, headers={"Accept-Encoding": "gzip"}).raise_for_status()
            runs = []
            for _ in range(rounds):
                out = subprocess.run(["wrk", "-t2", "-c50", f"-d{seconds}s", "-H", "Accept-Encoding: gzip", link],
                                     capture_output=True, text=True, check=True).stdout
                runs.append(float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1]))
            return runs
        finally:
            proc.terminate()
            proc.wait(30)


def row(label: str, one: Figure, two: Figure, ratio: bool) -> str:
    fmt = "{:,.0f}" if ratio else "{:,.1f}"  # rates whole; CPU per 1,000 events and % with a decimal
    cells = [one.spread(fmt), two.spread(fmt)]
    return f"| {label} | {cells[0]} | {cells[1]} | {f'{two.median / one.median:.2f}' if ratio else ''} |"


def bundles(rounds: int) -> None:
    one, two = Figure(bundle_rps(1, rounds=rounds)), Figure(bundle_rps(2, rounds=rounds))
    print(row("bundle (serve --workers N), req/s", one, two, True)
          + f"   ({os.cpu_count()} cores shared with wrk; target: 2 processes > 1; {load()})")


def main() -> None:
    global INGEST_EVENTS, INGEST_SECONDS, DELIVERY_EVENTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side, alternating (default 3, at least 3)")
    parser.add_argument("--seconds", type=int, default=INGEST_SECONDS, help=f"wrk seconds per ingest run "
                        f"(default {INGEST_SECONDS}, SCALE_SECONDS)")
    parser.add_argument("--events", type=int, default=INGEST_EVENTS, help="events per ingest run without wrk "
                        f"(default {INGEST_EVENTS:,}, SCALE_EVENTS)")
    parser.add_argument("--delivery-events", type=int, default=DELIVERY_EVENTS, help="stored events per delivery run "
                        f"(default {DELIVERY_EVENTS:,}, SCALE_DELIVERY_EVENTS)")
    parser.add_argument("--bundles", action="store_true", help="only the bundle part (1 vs 2 `serve --workers`)")
    args = parser.parse_args()
    INGEST_EVENTS, INGEST_SECONDS, DELIVERY_EVENTS = args.events, args.seconds, args.delivery_events
    rounds = round_count(args.rounds)
    header(f"bench/scale.py: 1 vs 2 processes on one PostgreSQL, {rounds} rounds; {os.cpu_count()} CPU core(s), "
           "load generator, servers, workers and PostgreSQL all share them")
    table_head = "| | 1 process | 2 processes | ratio (of the medians) |\n|---|---|---|---|"
    if WRK and args.bundles:
        print(table_head)
        bundles(rounds)
        return
    hook, hook_name = receiver()
    sides: dict[str, dict[int, list[Result]]] = {"ingest": {1: [], 2: []}, "delivery": {1: [], 2: []}}
    try:
        with postgres_server() as pg:
            how = f"wrk for {INGEST_SECONDS} s" if WRK else f"{INGEST_EVENTS:,} events from Python (httpx)"
            print(f"ingest: {how}, batches of {BATCH} events, {CONCURRENCY} requests in flight")
            print(f"delivery: {DELIVERY_EVENTS:,} stored events → webhooks → {hook_name}")
            for number in range(rounds):
                for n in (1, 2) if number % 2 == 0 else (2, 1):  # alternate who goes first
                    sides["ingest"][n].append(ingest(pg, n))
                for n in (1, 2) if number % 2 == 0 else (2, 1):
                    sides["delivery"][n].append(delivery(pg, n, hook.url))
                print(f"  round {number + 1}: ingest {sides['ingest'][1][-1].rate:,.0f} / "
                      f"{sides['ingest'][2][-1].rate:,.0f} ev/s, delivery {sides['delivery'][1][-1].rate:,.0f} / "
                      f"{sides['delivery'][2][-1].rate:,.0f} ev/s ({load()})", flush=True)
    finally:
        hook.close()

    def figure(part: str, n: int, attr: str) -> Figure:
        return Figure([getattr(result, attr) for result in sides[part][n]])

    rows = [
        ("ingest (serve --role edge), ev/s", "ingest", "rate", True),
        ("  server CPU, ms per 1,000 ev", "ingest", "cpu_ms", False),
        ("  PostgreSQL CPU, ms per 1,000 ev", "ingest", "pg_ms", False),
        ("  load generator CPU, ms per 1,000 ev", "ingest", "client_ms", False),
        ("  machine CPU busy, %", "ingest", "busy", False),
        ("delivery (switchboard worker), ev/s", "delivery", "rate", True),
        ("  worker CPU, ms per 1,000 ev", "delivery", "cpu_ms", False),
        ("  PostgreSQL CPU, ms per 1,000 ev", "delivery", "pg_ms", False),
        ("  machine CPU busy, %", "delivery", "busy", False),
    ]
    print(f"\nmedian (min–max) of {rounds} rounds, {load()}")
    print(table_head)
    for label, part, attr, rate in rows:
        print(row(label, figure(part, 1, attr), figure(part, 2, attr), rate))
    if WRK:
        bundles(rounds)
    cores = os.cpu_count() or 1
    print(f"""
{cores} CPU core(s) are shared by the load generator, every server or worker process and PostgreSQL
(other programs running at the same time show up in "machine CPU busy" too). When the machine is
near 100 % busy, the events/s ratio measures the CPUs, not Switchboard. The CPU-per-event rows are
the machine-independent part: if they stay flat from one process to two, the processes do not
slow each other down (no lock waits or retries in the database), so on separate machines
throughput adds up until PostgreSQL's own CPU or disk is the limit.""")


if __name__ == "__main__":
    main()

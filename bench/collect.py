"""Collector throughput: durable ingest vs a bare Starlette route, from one run on this machine.

    .venv/bin/python bench/collect.py [--duration 10] [--connections 64,256] [--database sqlite|postgres]

Both servers run as subprocesses with the same ``uvicorn.run`` settings (uvloop + httptools,
access log off, one process, and ``server.api.edge.uvicorn_options``: the protocol with the header
limits, deadlines and connection cap that ``switchboard serve`` uses). A third server, bare
Starlette on uvicorn's stock httptools protocol, shows what those checks cost by themselves. The baseline is a Starlette app whose ``POST /v1/t`` parses the
JSON body and answers ``200 {"success":true}`` without storing anything. Ours is the real app
(every plane; delivery workers off so that only ingest is measured) on a fresh database:
validation, normalisation, dedupe, group commit with fsync before the 200.

1. single events: wrk on ``/v1/t`` with a ~600-byte analytics.js-like event, a unique
   messageId per request — requests/s for both, and the ratio (target ≥ 0.6), at 64 and 256
   connections. A durable answer waits for a commit, so by Little's law a durable server needs
   more requests in flight than a bare one to reach its maximum rate;
2. batches of 100 on ``/v1/batch``: max requests/s × 100 = durable events/s (checked against
   the rows actually in the database; target ≥ 30,000);
3. the same batches at half that rate (wrk with a per-connection delay): p50 / p99 latency.

The whole measurement runs ``--rounds`` times (default 3, on the same database); each round
prints its table, and the last lines give every ratio and CPU figure as the median of the
rounds with its spread (min–max) and the load average (bench/rounds.py).
"""

from __future__ import annotations

import argparse
import os
import re
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

UVICORN = dict(host="127.0.0.1", log_level="warning", access_log=False, loop="auto", http="auto")

CONTEXT = (
    '{"page":{"path":"/pricing","referrer":"https://www.google.com/","search":"","title":"Pricing — Acme",'
    '"url":"https://acme.example/pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 '
    '(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36","locale":"en-US","timezone":"Europe/Paris",'
    '"library":{"name":"analytics.js","version":"next-1.84.3"}}'
)

LUA = r"""
local counter = 0
local prefix = "__PREFIX__" .. math.random(1, 1e9) .. "-"
local delay_ms = __DELAY__

local function event(n)
  return '{"type":"track","event":"Plan Selected","anonymousId":"5f0e3a1c-8d2b-4e6f-9a7c-1b2d3e4f5a6b",' ..
    '"userId":"user-1234","messageId":"' .. prefix .. n .. '","timestamp":"2026-11-29T10:00:00.000Z",' ..
    '"properties":{"plan":"pro","price":49,"currency":"EUR"},"integrations":{},' ..
    '"context":__CONTEXT__}'
end

request = function()
  if __BATCH__ == 0 then
    counter = counter + 1
    local body = event(counter)
    body = '{"writeKey":"__KEY__","sentAt":"2026-11-29T10:00:00.100Z",' .. body:sub(2)
    return wrk.format("POST", "/v1/t", {["Content-Type"] = "text/plain"}, body)
  end
  local parts = {}
  for i = 1, __BATCH__ do
    counter = counter + 1
    parts[i] = event(counter)
  end
  local body = '{"writeKey":"__KEY__","sentAt":"2026-11-29T10:00:00.100Z","batch":[' ..
    table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/json"}, body)
end

if delay_ms > 0 then
  delay = function() return delay_ms end
end
"""


# ---------------------------------------------------------------- the two servers


def bare_app():
    import orjson
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def track(request):
        orjson.loads(await request.body())
        return Response(b'{"success":true}', media_type="application/json")

    return Starlette(routes=[Route("/v1/t", track, methods=["POST"]), Route("/v1/batch", track, methods=["POST"])])


def our_app(database_url: str):
    from server.app import create_app
    from server.config import Config

    return create_app(Config(database_url=database_url, delivery_workers=False, log_level="WARNING"))


def serve(kind: str, port: int, database_url: str) -> None:
    import uvicorn

    from server.config import Config
    from server.api.edge import uvicorn_options

    app = our_app(database_url) if kind == "ours" else bare_app()
    # Ours and the baseline run on the protocol and timeouts `switchboard serve` uses (header
    # limits, deadlines, connection cap), so the ratio compares apps; "stock" is bare Starlette on
    # uvicorn's own httptools protocol, to show what the edge checks cost by themselves.
    edge = {} if kind == "stock" else uvicorn_options(Config(database_url=database_url))
    uvicorn.run(app, port=port, **{**UVICORN, **edge})


class Server:
    def __init__(self, kind: str, database_url: str):
        from pgserver import free_port, wait_for_port

        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(self.port), "--database-url", database_url],
            cwd=ROOT,
        )
        wait_for_port(self.port, 30)

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def measure(self, key: str, **wrk_args) -> dict:
        before = self.cpu_seconds()
        result = wrk(self.port, key, **wrk_args)
        result["cpu_us"] = (self.cpu_seconds() - before) / max(1, result["requests"]) * 1e6
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---------------------------------------------------------------- wrk


def wrk(port: int, key: str, *, batch: int, duration: float, connections: int, delay_ms: float = 0) -> dict:
    script = (
        LUA.replace("__PREFIX__", uuid.uuid4().hex[:8])
        .replace("__DELAY__", f"{delay_ms:.3f}")
        .replace("__BATCH__", str(batch))
        .replace("__KEY__", key)
        .replace("__CONTEXT__", CONTEXT)
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "--latency",
             "-s", handle.name,
             f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    return parse_wrk(out)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> dict:
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
        "errors": sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)),
    }
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+(?:us|ms|s))", out)
        result[f"p{pct}"] = _ms(match.group(1)) if match else float("nan")
    return result


# ---------------------------------------------------------------- the run


def database(kind: str, workdir: Path, stack) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    from pgserver import postgres_server

    return stack.enter_context(postgres_server()).create_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--connections", default="64,256",
                        help="wrk connections for single events, comma-separated (default 64,256)")
    parser.add_argument("--batch-connections", type=int, default=32, help="wrk connections for batches (default 32)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=3, help="whole measurements, for medians (default 3)")
    parser.add_argument("--serve", choices=["bare", "ours", "stock"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.database_url)
        return

    import contextlib

    from server.store import open_store, workspace

    connections = [int(c) for c in args.connections.split(",")]
    bc = args.batch_connections
    from rounds import Figure, count as round_count, header, load

    figures: dict[str, Figure] = {}

    def note(name: str, value: float) -> None:
        figures.setdefault(name, Figure([])).values.append(value)

    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp, contextlib.ExitStack() as stack:
        url = database(args.database, Path(tmp), stack)
        engine = open_store(url)
        key = workspace.create_source(engine, "Bench")["write_key"]
        args.rounds = round_count(args.rounds)
        header(f"bench/collect.py, {args.database}, {args.rounds} rounds")
        for number in range(1, args.rounds + 1):
            print(f"\n-- round {number}", flush=True)
            singles, batch, batch_stored, paced = one_round(args, engine, url, key, connections, bc)
            for c, base, single in singles:
                note(f"single event, {c} conns: ratio ours / bare (target >= 0.6)", single["rps"] / base["rps"])
                note(f"single event, {c} conns: CPU ratio bare / ours", base["cpu_us"] / single["cpu_us"])
                note(f"single event, {c} conns: our CPU per request (us)", single["cpu_us"])
            note("batches of 100: CPU per event (us, target <= 20)", batch["cpu_us"] / 100)
            note("batches of 100: durable events/s", batch["rps"] * 100)
            note("batches of 100 at half rate: CPU per event (us)", paced["cpu_us"] / 100)
            for figure in figures.values():
                figure.loads.append(load())
        engine.dispose()

    print(f"\nmedian of {args.rounds} rounds (min–max), {args.database}:")
    width = max(len(name) for name in figures)
    for name, figure in figures.items():
        fmt = "{:,.0f}" if "events/s" in name else "{:.2f}" if "ratio" in name else "{:.1f}"
        print(f"  {name:<{width}}  {figure.text(fmt)}")


def one_round(args, engine, url: str, key: str, connections: list[int], bc: int):
    """One whole measurement (fresh servers on the same database): prints its table."""
    from server.store import events

    warm = min(3.0, args.duration)
    print(f"wrk -t1, {args.duration:g} s per run, {os.cpu_count()} CPUs, database: {args.database}", flush=True)

    # Both servers stay up (an idle server costs nothing) so that each pair of runs is back
    # to back: the machine's state drifts less between the two halves of a ratio.
    bare, ours, stock = Server("bare", url), Server("ours", url), Server("stock", url)
    try:
        singles = []
        for c in connections:
            wrk(stock.port, key, batch=0, duration=warm, connections=c)
            stock_run = stock.measure(key, batch=0, duration=args.duration, connections=c)
            wrk(bare.port, key, batch=0, duration=warm, connections=c)
            base = bare.measure(key, batch=0, duration=args.duration, connections=c)
            base["stock"] = stock_run
            wrk(ours.port, key, batch=0, duration=warm, connections=c)
            before = events.count_events(engine)
            single = ours.measure(key, batch=0, duration=args.duration, connections=c)
            single["stored"] = events.count_events(engine) - before
            singles.append((c, base, single))
        bare.stop()
        stock.stop()

        wrk(ours.port, key, batch=100, duration=warm, connections=bc)
        before = events.count_events(engine)
        batch = ours.measure(key, batch=100, duration=args.duration, connections=bc)
        batch_stored = events.count_events(engine) - before

        half_rate = batch["rps"] / 2
        # Each connection waits so that together they send half the maximum rate.
        delay = max(0.0, bc / half_rate * 1000 - batch["p50"] / 2)
        paced = ours.measure(key, batch=100, duration=args.duration, connections=bc, delay_ms=delay)
    finally:
        bare.stop()
        stock.stop()
        ours.stop()

    runs = [(f"c{c} {name}", run) for c, base, single in singles for name, run in (("bare", base), ("ours", single))]
    for name, run in runs + [("batch", batch), ("paced", paced)]:
        if run["non2xx"] or run["errors"]:
            print(f"WARNING: {name}: {run['non2xx']} non-2xx answers, {run['errors']} socket errors")

    def cpu(run, per=1):
        return f"{run['cpu_us'] / per:,.0f} us CPU/{'req' if per == 1 else 'event'}"

    def line(run):
        return [f"p50 {run['p50']:.2f} ms", f"p99 {run['p99']:.2f} ms"]

    rows = []
    for c, base, single in singles:
        rows += [
            (f"single event, {c} conns: bare Starlette", f"{base['rps']:,.0f} req/s", *line(base), cpu(base)),
            (f"single event, {c} conns: Switchboard (durable)", f"{single['rps']:,.0f} req/s", *line(single),
             cpu(single)),
            ("  ratio ours / bare (target >= 0.6)", f"{single['rps'] / base['rps']:.2f}",
             f"stored {single['stored']:,}", "", f"CPU ratio {base['cpu_us'] / single['cpu_us']:.2f}"),
            ("  bare on uvicorn's stock protocol", f"{base['stock']['rps']:,.0f} req/s", *line(base['stock']),
             cpu(base['stock'])),
            ("  ratio bare edge / bare stock (edge checks)", f"{base['rps'] / base['stock']['rps']:.2f}", "", "",
             f"CPU ratio {base['stock']['cpu_us'] / base['cpu_us']:.2f}"),
        ]
    rows += [
        (f"batches of 100, {bc} conns, max rate", f"{batch['rps']:,.0f} req/s", *line(batch), cpu(batch, 100)),
        ("  durable events/s (target >= 30,000)", f"{batch['rps'] * 100:,.0f}",
         f"in DB: {batch_stored / args.duration:,.0f}/s", "", ""),
        (f"batches of 100 at half rate ({paced['rps']:,.0f} req/s)", f"{paced['rps'] * 100:,.0f} ev/s",
         *line(paced), cpu(paced, 100)),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for label, *cells in rows:
        print(f"{label:<{width}}  {cells[0]:>14}  {cells[1]:>18}  {cells[2]:>16}  {cells[3]:>20}")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"\nnote: load average {load:.1f} on {os.cpu_count()} CPUs during the run — other work competed "
              "for the CPUs; the CPU-per-request figures are the steadier comparison")
    return singles, batch, batch_stored, paced


if __name__ == "__main__":
    main()

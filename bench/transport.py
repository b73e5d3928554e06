"""HTTP client benchmark: our delivery transport against aiohttp's client and plain httpx.

Issue #18 asks whether the hand-written transport (``server/delivery/transport.py``) still earns
its keep: where a maintained library is within 20 % of it, we should use the library and delete
our own transport and proxy code; where ours is clearly faster, keep it and record the figures.

One receiver, in its own process so that its CPU is not counted with the client's: a raw asyncio
protocol parsing requests with httptools and answering ``200 ok`` with keep-alive (about as cheap
as a server gets in Python, so the client's cost dominates). Then, in turn, on one event loop
(uvloop, as ``switchboard serve`` and ``switchboard worker`` run; ``--asyncio`` for the stdlib
loop), the same JSON POSTs of a ~1 KB event, ``--inflight`` (64) at a time:

- ours: ``httpx.AsyncClient(transport=HTTP11Transport())``; the sender uses no client, so two
  more rows show an ``httpx.Request`` handed to ``transport.handle_async_request`` and the
  sender's own path, ``transport.send`` with raw headers and bytes (the verdict uses this one);
- aiohttp: ``aiohttp.ClientSession`` (its own connection pool, C-accelerated parser);
- httpx: ``httpx.AsyncClient()`` on its default transport (httpcore + h11).

Each client runs ``--rounds`` rounds (interleaved, so all see the same machine load); printed are
medians with min–max, the client process's CPU per request, and ratios ours/aiohttp and
ours/httpx from this one run.

Usage: .venv/bin/python bench/transport.py [--requests 5000] [--rounds 3] [--inflight 64] [--asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import httptools  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402

from pgserver import free_port, wait_for_port  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402
from server.delivery.transport import HTTP11Transport  # noqa: E402

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


# ---------------------------------------------------------------- the receiver (its own process)


class _Receiver(asyncio.Protocol):
    """Keep-alive HTTP/1.1: parse each request with httptools, answer 200 when it is complete."""

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self):
        self.transport.write(ANSWER)


def run_receiver(port: int) -> None:
    import uvloop

    async def serve():
        server = await asyncio.get_running_loop().create_server(_Receiver, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


# ---------------------------------------------------------------- the clients


def event(i: int) -> bytes:
    """A typical track event as the webhook destination posts it, about 1 KB of JSON."""
    return orjson.dumps({
        "type": "track", "event": "Order Completed", "messageId": f"bench-{i:012d}-0000-4000-8000-000000000000",
        "userId": f"user-{i % 500}", "anonymousId": "0d8c1c5e-2f1b-4a8e-9a43-6f1f2b6d3c7e",
        "timestamp": "2026-12-06T20:00:00.000Z", "receivedAt": "2026-12-06T20:00:00.123Z",
        "sentAt": "2026-12-06T20:00:00.050Z",
        "properties": {"order_id": f"o-{i}", "total": 42.5, "currency": "EUR", "coupon": "WINTER",
                       "products": [{"product_id": f"p{j}", "sku": f"SKU-{j:05d}", "name": "A thing",
                                     "price": 10.5, "quantity": 2} for j in range(3)]},
        "context": {"ip": "203.0.113.7", "locale": "de-DE",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                 "Chrome/131.0 Safari/537.36",
                    "page": {"path": "/checkout/done", "url": "https://shop.example/checkout/done",
                             "referrer": "https://shop.example/cart", "title": "Thank you"},
                    "library": {"name": "analytics.js", "version": "next-1.70.0"}},
        "integrations": {}, "writeKey": "wk_bench",
    })


HEADERS = {"Content-Type": "application/json", "User-Agent": "Segment.io/1.0"}


async def _drive(send, bodies: list[bytes], inflight: int) -> None:
    async def worker(chunk):
        for body in chunk:
            await send(body)

    await asyncio.gather(*[worker(bodies[i::inflight]) for i in range(inflight)])


async def _timed(send, bodies, inflight) -> tuple[float, float]:
    """(requests/s, client CPU µs per request) after a short warm-up (connections opened)."""
    await _drive(send, bodies[: inflight * 4], inflight)
    cpu, wall = time.process_time(), time.perf_counter()
    await _drive(send, bodies, inflight)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(bodies) / wall, cpu / len(bodies) * 1e6


async def ours_client(url, bodies, inflight):
    async with httpx.AsyncClient(transport=HTTP11Transport(), timeout=30) as client:
        async def send(body):
            answer = await client.post(url, content=body, headers=HEADERS)
            if answer.status_code != 200:
                raise SystemExit(f"ours: HTTP {answer.status_code}")
        return await _timed(send, bodies, inflight)


async def ours_raw(url, bodies, inflight):
    """The sender's path: ``transport.send`` with raw headers and bytes, no httpx objects."""
    transport = HTTP11Transport()
    target = httpx.URL(url)
    timeout = httpx.Timeout(30).as_dict()
    headers = [(name.encode(), value.encode()) for name, value in HEADERS.items()]
    try:
        async def send(body):
            status, _, _, _, _ = await transport.send(
                "POST", target, [*headers, (b"Content-Length", str(len(body)).encode())], body, timeout)
            if status != 200:
                raise SystemExit(f"ours: HTTP {status}")
        return await _timed(send, bodies, inflight)
    finally:
        await transport.aclose()


async def ours_direct(url, bodies, inflight):
    """An httpx.Request handed straight to the transport (the sender's path before issue #18)."""
    transport = HTTP11Transport()
    timeout = {"timeout": httpx.Timeout(30).as_dict()}
    try:
        async def send(body):
            request = httpx.Request("POST", url, headers=HEADERS, content=body, extensions=timeout)
            answer = await transport.handle_async_request(request)
            await answer.aread()
            await answer.aclose()
            if answer.status_code != 200:
                raise SystemExit(f"ours: HTTP {answer.status_code}")
        return await _timed(send, bodies, inflight)
    finally:
        await transport.aclose()


async def aiohttp_client(url, bodies, inflight):
    import aiohttp

    import yarl

    connector = aiohttp.TCPConnector(limit=256)
    target = yarl.URL(url)  # parsed once, as the sender caches its parsed URLs
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def send(body):
            async with session.post(target, data=body, headers=HEADERS) as answer:
                await answer.read()
                if answer.status != 200:
                    raise SystemExit(f"aiohttp: HTTP {answer.status}")
        return await _timed(send, bodies, inflight)


async def httpx_client(url, bodies, inflight):
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def send(body):
            answer = await client.post(url, content=body, headers=HEADERS)
            if answer.status_code != 200:
                raise SystemExit(f"httpx: HTTP {answer.status_code}")
        return await _timed(send, bodies, inflight)


CLIENTS = {
    "ours (httpx.AsyncClient on transport.py)": ours_client,
    "ours, httpx.Request to the transport": ours_direct,
    "ours, as the sender calls it (transport.send)": ours_raw,
    "aiohttp.ClientSession": aiohttp_client,
    "httpx.AsyncClient, default transport (httpcore)": httpx_client,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=5000, help="requests per client per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, interleaved (default 3)")
    parser.add_argument("--inflight", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--asyncio", action="store_true", help="stdlib event loop instead of uvloop")
    args = parser.parse_args()
    if args.receiver:
        run_receiver(args.receiver)
        return
    args.rounds = round_count(args.rounds)
    header(f"bench/transport.py: our transport vs aiohttp and httpx, {args.rounds} rounds")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)], cwd=ROOT)
    try:
        wait_for_port(port, 30)
        url = f"http://127.0.0.1:{port}/hook"
        bodies = [event(i) for i in range(args.requests)]
        run = asyncio.run
        if not args.asyncio:
            import uvloop
            run = uvloop.run
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
        for _ in range(args.rounds):
            for name, client in CLIENTS.items():
                results[name].append(run(client(url, bodies, args.inflight)))
    finally:
        receiver.terminate()
        receiver.wait(10)

    def median(name, k):
        return statistics.median(r[k] for r in results[name])

    names = list(CLIENTS)
    ours, direct, raw, aio, plain = names
    loop = "asyncio" if args.asyncio else "uvloop"
    print(f"\nHTTP client benchmark — {os.cpu_count()} CPUs, {load()} after the rounds, {loop}, "
          f"{args.rounds} rounds × {args.requests} POSTs of {len(bodies[0])} B JSON, {args.inflight} in flight, "
          "receiver in its own process\n")
    width = max(map(len, names))
    print(f"{'client':<{width}}  {'requests/s median (min–max)':>28}  {'client CPU µs/request, median (min–max)':>40}")
    print("-" * (width + 72))
    for name in names:
        rates = Figure([r[0] for r in results[name]]).spread("{:,.0f}")
        cpu = Figure([r[1] for r in results[name]]).spread("{:,.0f}")
        print(f"{name:<{width}}  {rates:>28}  {cpu:>40}")
    print()
    for label, mine in (("ours (client)", ours), ("ours (httpx.Request)", direct), ("ours (sender's path)", raw)):
        print(f"{label} / aiohttp: {median(mine, 0) / median(aio, 0):.2f}× requests/s, "
              f"{median(mine, 1) / median(aio, 1):.2f}× CPU per request")
        print(f"{label} / httpx:   {median(mine, 0) / median(plain, 0):.2f}× requests/s, "
              f"{median(mine, 1) / median(plain, 1):.2f}× CPU per request")
    # The verdict uses the sender's own path: it hands requests to the transport, not to a client.
    verdict = median(raw, 0) / median(aio, 0)
    print(f"\nissue #18's rule (the sender's path): a library within 20 % (ours ≤ 1.20× aiohttp) should "
          f"replace ours — ours is {verdict:.2f}× aiohttp: "
          f"{'within 20 %: prefer the library' if verdict <= 1.2 else 'clearly faster: keep ours'}")


if __name__ == "__main__":
    main()

"""What the HTTP edge checks cost per request: our protocol vs uvicorn's stock httptools protocol.

    .venv/bin/python bench/edge.py [--requests 20000] [--rounds 7]

No sockets: both protocols get the same bytes through a stand-in transport on one event loop
and a trivial ASGI app answers, so only the protocols' own work differs. Reports the best of
alternating rounds (CPU time of this process), per request, for a bundle-like GET with the
headers a browser sends, a single-event POST, and the GET arriving in three pieces (which arms
and cancels a header deadline). The ratio stock / edge should be within noise of 1. Each figure
is also printed as the median of the rounds with its spread and the load average (bench/rounds.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import uvicorn  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402

from server.config import Config  # noqa: E402
from server.api.edge import edge_limits, protocol_class  # noqa: E402

GET = (b"GET /analytics.js/v1/abcdefghijklmnop/analytics.min.js HTTP/1.1\r\nHost: t.example.com\r\n"
       b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n"
       b"Accept: */*\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n"
       b"Referer: https://shop.example/\r\nSec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\n"
       b"Sec-Fetch-Site: cross-site\r\nIf-None-Match: \"0123456789abcdef\"\r\n\r\n")
BODY = b'{"writeKey":"abcdefghijklmnop","type":"track","event":"Plan Selected","userId":"u-1","properties":{"plan":"pro"}}'
POST = (b"POST /v1/t HTTP/1.1\r\nHost: t.example.com\r\nContent-Type: text/plain\r\nOrigin: https://shop.example\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data) -> None:
        self.written += 1

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope, receive, send):
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def run(protocol_type, pieces: list[bytes], requests: int) -> float:
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    config.load()
    protocol = protocol_type(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    start = time.process_time()
    for _ in range(requests):
        for piece in pieces:
            protocol.data_received(piece)
        while protocol.cycle is None or not protocol.cycle.response_complete:
            await asyncio.sleep(0)
    took = time.process_time() - start
    protocol.connection_lost(None)
    return took / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds (default 10, at least 3)")
    args = parser.parse_args()
    args.rounds = round_count(args.rounds)
    edge = protocol_class(edge_limits(Config()))
    cases = {"GET (bundle-like, 11 headers)": [GET], "POST single event": [POST],
             "GET in 3 pieces": [GET[:40], GET[40:200], GET[200:]]}
    header(f"bench/edge.py: per-request CPU of the protocol, {args.rounds} alternating rounds x {args.requests}")
    print("best of the rounds, then median (min–max) of the rounds, µs per request")
    for name, pieces in cases.items():
        times = {"stock": Figure([]), "edge": Figure([])}
        kinds = [("stock", HttpToolsProtocol), ("edge", edge)]
        for round_ in range(args.rounds):
            for label, kind in kinds if round_ % 2 else kinds[::-1]:  # alternate who goes first
                times[label].values.append(asyncio.run(run(kind, pieces, args.requests)))
                times[label].loads.append(load())
        best = {label: min(figure.values) for label, figure in times.items()}
        paired = Figure([s / e for s, e in zip(times["stock"].values, times["edge"].values)], times["edge"].loads)
        print(f"{name:32} best: stock {best['stock']:6.2f} us   edge {best['edge']:6.2f} us   "
              f"ratio stock/edge {best['stock'] / best['edge']:.2f}")
        print(f"{'':32} median: stock {times['stock'].spread('{:.2f}')}   edge {times['edge'].spread('{:.2f}')}   "
              f"ratio stock/edge round by round {paired.spread('{:.2f}')}")
    print(f"after the rounds: {load()}")

if __name__ == "__main__":
    main()

"""Test support for delivery: real HTTP servers on 127.0.0.1 that impersonate vendor APIs.

``Vendor`` records every request (method, path, query, headers, body) and answers with what its
``responder`` says — 200 by default; tests script outages (503 then 200), permanent errors,
hangs and Retry-After. ``send`` pushes translator output through the real shared ``Sender``
with the vendor's host mapped to the local server (the test-only ``base_urls`` hook).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import orjson

from server.delivery.sender import Outcome, Sender


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return orjson.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


Response = tuple[int, dict[str, str], bytes]
Responder = Callable[[Recorded], Response]


def ok(record: Recorded) -> Response:
    return 200, {"Content-Type": "application/json"}, b'{"ok":true}'


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connection attempts when a worker opens a hundred at once
    # (many lanes), and a dropped SYN is retried only after a second or more.
    request_queue_size = 512


class Vendor:
    def __init__(self, responder: Responder = ok):
        self.responder = responder
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                # Without this, Nagle + delayed ACK add ~40 ms to every small response.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                record = Recorded(
                    self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()}, body,
                )
                with vendor._lock:
                    vendor.requests.append(record)
                status, headers, payload = vendor.responder(record)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "Vendor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)

    def wait_for(self, count: int, timeout: float = 20.0, predicate=None) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for r in self.snapshot() if predicate is None or predicate(r)]
            if len(got) >= count:
                return got
            time.sleep(0.01)
        raise AssertionError(f"{self.url}: expected {count} requests, got {len(self.snapshot())}")


def send(requests, base_urls: dict[str, str], timeout: float = 5.0) -> Outcome:
    """Perform translator output with the real Sender, vendor hosts mapped to local servers."""

    async def run() -> Outcome:
        sender = Sender(timeout=timeout, base_urls=base_urls, allow_private_egress=True)
        try:
            return await sender.perform(requests)
        finally:
            await sender.aclose()

    return asyncio.run(run())


def make_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A normalised event as the collector stores it."""
    event: dict[str, Any] = {
        "type": kind,
        "messageId": fields.pop("messageId", f"msg-{uuid.uuid4().hex[:20]}"),
        "anonymousId": fields.pop("anonymousId", "anon-12345"),
        "timestamp": fields.pop("timestamp", "2026-03-04T05:06:07.123Z"),
        "receivedAt": datetime.now(timezone.utc).isoformat(),
        "context": fields.pop("context", {"ip": "203.0.113.9", "library": {"name": "analytics.js", "version": "5"},
                                          "page": {"url": "https://shop.example/cart", "title": "Cart",
                                                   "referrer": "https://search.example/"}}),
        "integrations": fields.pop("integrations", {}),
    }
    event.update(fields)
    return event

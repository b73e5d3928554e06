"""uvicorn's httptools protocol with the limits it lacks: header size, read deadlines, a connection cap.

uvicorn's ``HttpToolsProtocol`` accepts request lines and headers of any size (httptools buffers
a header value until it ends), never times out a connection that has sent nothing or half a
request, and has no cap on connections except ``limit_concurrency``, which answers plain text.
One client could hold memory and file descriptors forever. ``EdgeProtocol`` is the same protocol
(same parser, same speed) with four guards, all per connection and all O(1):

- **Header size**: the request line plus headers may hold ``max_header_bytes``; beyond it the
  answer is ``431 {"code": "headers_too_large"}``. Counted exactly from the parser's callbacks, and
  from the raw bytes read since the last complete request while the headers are still
  incomplete, so a header that never ends is cut too (httptools would buffer it whole before
  calling us).
- **Header deadline**: a connection must deliver a request's line and headers within
  ``header_timeout`` of connecting (or of that request's first incomplete chunk), else it is
  closed. Idle keep-alive connections are closed by uvicorn's ``timeout_keep_alive``.
- **Body deadline**: once the headers are in, the body must arrive within ``body_timeout``;
  else the connection is closed and the app's ``receive()`` gets ``http.disconnect``.
- **Connection cap**: a connection opened while ``max_connections`` are open gets
  ``503 {"code": "too_many_connections"}`` to its first request (or is closed after one second
  of silence); it never reaches the app.

A request that arrives in one chunk (nearly all of them) arms no timer of ours: timers are armed
only when a chunk leaves a request incomplete, so the hot paths pay a few attribute updates.
Refusals close "lingeringly": the answer is written, our side is shut, and what the client still
sends is read and dropped for up to a second, so that the client reads the answer instead of a
reset.
"""

from __future__ import annotations

import json
import logging
import time
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("switchboard.edge")

IDLE, HEADERS, BODY = 0, 1, 2
LINGER = 1.0  # seconds a refused connection is drained before it is closed
WARN_EVERY = 60.0  # refusals are logged as one summary line at most this often


@dataclass(frozen=True)
class EdgeLimits:
    max_header_bytes: int = 16384
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 10000


class _Refused(Exception):
    """Raised from a parser callback to stop parsing once a refusal was written."""


class _Refusals:
    """Counts refusals by kind; logs one summary line a minute (never a client-written value)."""

    counts: dict[str, int] = {}
    last_logged = 0.0

    @classmethod
    def add(cls, code: str) -> None:
        cls.counts[code] = cls.counts.get(code, 0) + 1
        now = time.monotonic()
        if now - cls.last_logged >= WARN_EVERY:
            cls.last_logged = now
            log.warning("refused connections at the HTTP edge since the last report: %s",
                        ", ".join(f"{k}={v}" for k, v in sorted(cls.counts.items())))
            cls.counts = {}


class EdgeProtocol(HttpToolsProtocol):
    limits: EdgeLimits = EdgeLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = IDLE
        self._header_bytes = 0  # request line + headers, exact, from the callbacks
        self._raw_bytes = 0  # bytes of chunks read since the last complete request, while no body
        self._timer: TimerHandle | None = None
        self._refused = False
        self._over_cap = False

    # ------------------------------------------------------------ connection

    def connection_made(self, transport) -> None:  # type: ignore[override]
        over_cap = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if over_cap:
            self._over_cap = True
            self._arm(min(LINGER, self.limits.header_timeout))
        else:
            self._arm(self.limits.header_timeout)  # the first request's line and headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining before the close; see _refuse
        self._unset_keepalive_if_required()
        if self._phase != BODY:  # a request's line and headers, or the start of the next one
            self._raw_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refused:
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._phase == HEADERS:
            if self._raw_bytes > self.limits.max_header_bytes:
                self._refuse_quietly(431, "headers_too_large", self._too_large_message())
            elif self._timer is None:
                self._arm(self.limits.header_timeout)
        elif self._phase == BODY and self._timer is None:
            self._arm(self.limits.body_timeout)

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = HEADERS
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, "headers_too_large", self._too_large_message())
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, "headers_too_large", self._too_large_message())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = BODY
        self._disarm()
        if self._over_cap:
            self._refuse(503, "too_many_connections",
                         "The server has too many open connections; retry shortly")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = IDLE
        self._raw_bytes = 0  # what follows in this chunk goes uncounted: at most one read
        if self._timer is not None:
            self._disarm()
        super().on_message_complete()

    # ------------------------------------------------------------ deadlines and refusals

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._deadline_passed)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline_passed(self) -> None:
        # Headers or body too slow, a connection that never sent a request, or a refusal's drain over.
        self._timer = None
        if not self._refused:
            _Refusals.add({HEADERS: "header_timeout", BODY: "body_timeout"}.get(self._phase, "idle_connection"))
        if not self.transport.is_closing():
            self.transport.close()

    def _too_large_message(self) -> str:
        return (f"The request line and headers are over {self.limits.max_header_bytes} bytes "
                "(SWITCHBOARD_MAX_HEADER_BYTES)")

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refuse_quietly(status, code, message)
        raise _Refused(code)

    def _refuse_quietly(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` with our JSON error body, then close after a short drain."""
        if self._refused:
            return
        self._refused = True
        _Refusals.add(code)
        body = json.dumps({"code": code, "message": message}).encode()
        self.transport.write(b"".join([
            STATUS_LINE[status],
            b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n", body,
        ]))
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client sees the answer and our end, then may stop sending
            self._arm(LINGER)
        else:
            self.transport.close()

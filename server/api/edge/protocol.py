"""uvicorn's httptools protocol with the limits it lacks: header size, read deadlines, a connection cap.

uvicorn's ``HttpToolsProtocol`` accepts request lines and headers of any size (httptools buffers
a header value until it ends), never times out a connection that has sent nothing or half a
request, and has no cap on connections except ``limit_concurrency``, which answers plain text.
One client could hold memory and file descriptors forever. ``EdgeProtocol`` is the same protocol
(same parser, same speed) with four guards, all per connection and all O(1):

- **Header size**: the request line plus headers may hold ``max_header_bytes``; beyond it the
  answer is ``431 {"code": "headers_too_large"}``. The bytes read while a request's headers are
  incomplete are counted, so a header that never ends is cut at the limit (httptools would
  buffer it whole before calling us); when a read was larger than the limit, the complete
  headers are measured exactly (a big body in the same read must not count).
- **Header deadline**: a connection must deliver a request's line and headers within
  ``header_timeout`` of connecting (or of that request's first incomplete chunk), else it is
  closed. Idle keep-alive connections are closed by uvicorn's ``timeout_keep_alive``.
- **Body deadline**: once the headers are in, the body must arrive within ``body_timeout``;
  else the connection is closed and the app's ``receive()`` gets ``http.disconnect``.
- **Connection cap**: a connection opened while ``max_connections`` are open gets
  ``503 {"code": "too_many_connections"}`` to its first request (or is closed after one second
  of silence); it never reaches the app.

Bytes that are not HTTP get ``400 {"code": "invalid_http"}`` (uvicorn's is plain text).

Deadlines share one lazy timer per connection: a request sets and clears a float deadline, and
the timer (created when the connection opens, or when a read leaves a request incomplete and
none is pending) re-arms itself for a moved deadline when it fires. A request that arrives in one
read, nearly all of them, costs a few attribute updates and no timer work.
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

from server.api.edge.one_write import attach
from server.api.edge.stopping import stopping

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
        self._max_header_bytes = self.limits.max_header_bytes
        self._phase = IDLE
        # Bytes read since the last request completed, while no body was being read: an upper
        # bound of the current request's line and headers. ``_slack`` is the part of it that may
        # belong to the previous request (the rest of the chunk it completed in), so
        # ``_raw_bytes - _slack`` is a lower bound. Neither needs a callback per header.
        self._raw_bytes = self._slack = self._chunk = 0
        # One lazy timer per connection: requests set and clear ``_deadline`` (a float), and the
        # timer, when it fires, re-arms for a deadline that moved or does nothing if there is
        # none. Arming and cancelling a timer per request would cost more than the rest together.
        self._deadline: float | None = None
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0
        self._refused = False
        self._over_cap = False

    # ------------------------------------------------------------ connection

    def connection_made(self, transport) -> None:  # type: ignore[override]
        over_cap = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if over_cap:
            self._over_cap = True
            self._set_deadline(min(LINGER, self.limits.header_timeout))
        else:
            self._set_deadline(self.limits.header_timeout)  # the first request's line and headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        # uvicorn calls this on every open connection as it starts to stop, then waits for the
        # responses in progress: long ones (the debugger's stream) end now (stopping.py).
        stopping()
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining before the close; see _refuse
        self._unset_keepalive_if_required()
        self._chunk = len(data)
        if self._phase != BODY:  # a request's line and headers, or the start of the next one
            self._raw_bytes += self._chunk
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
            self.send_400_response("Invalid HTTP request received.")  # counted in the summary line
            return
        if self._phase == HEADERS:  # this chunk left a request's headers incomplete
            if self._raw_bytes - self._slack > self._max_header_bytes:
                # Certainly over: cut it now rather than let httptools buffer a header without end.
                self._refuse_quietly(431, "headers_too_large", self._too_large_message())
            elif self._deadline is None:
                self._set_deadline(self.limits.header_timeout)
        elif self._phase == BODY and self._deadline is None:
            self._set_deadline(self.limits.body_timeout)

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self._phase = HEADERS

    def on_headers_complete(self) -> None:
        self._phase = BODY
        self._deadline = None
        if self._raw_bytes > self._max_header_bytes and self._header_size() > self._max_header_bytes:
            self._refuse(431, "headers_too_large", self._too_large_message())
        if self._over_cap:
            self._refuse(503, "too_many_connections",
                         "The server has too many open connections; retry shortly")
        HttpToolsProtocol.on_headers_complete(self)
        if self.cycle is not None and not self._refused:
            attach(self.cycle)  # its ASGI task has not run yet: one_write.py

    def on_message_complete(self) -> None:
        self._phase = IDLE
        # The rest of this chunk (if any) is the next request's: counted, but as slack.
        self._raw_bytes = self._slack = self._chunk
        self._deadline = None
        HttpToolsProtocol.on_message_complete(self)

    def _header_size(self) -> int:
        """The exact size of the request line and headers (only asked when a read was large)."""
        return len(self.url) + 20 + sum(len(name) + len(value) + 4 for name, value in self.headers)

    # ------------------------------------------------------------ deadlines and refusals

    def _set_deadline(self, seconds: float) -> None:
        at = self.loop.time() + seconds
        self._deadline = at
        if self._timer is None or at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self.loop.call_at(at, self._deadline_check), at

    def _deadline_check(self) -> None:
        self._timer = None
        if self._deadline is None:
            return  # the request it was armed for completed in time
        if self._deadline > self.loop.time():  # a later request's deadline: wait for that
            self._timer, self._timer_at = self.loop.call_at(self._deadline, self._deadline_check), self._deadline
            return
        self._deadline = None
        # Headers or body too slow, a connection that never sent a request, or a refusal's drain over.
        if not self._refused:
            _Refusals.add({HEADERS: "header_timeout", BODY: "body_timeout"}.get(self._phase, "idle_connection"))
        if not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers bytes that are not HTTP with a plain-text 400; ours is JSON like every 4xx.
        self._refuse_quietly(400, "invalid_http", "The request is not valid HTTP/1.1")

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
            self._deadline = None
            self._set_deadline(LINGER)
        else:
            self.transport.close()

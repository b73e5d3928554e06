"""An httpx transport for vendor APIs: HTTP/1.1 keep-alive on asyncio protocols, parsed by httptools.

Why not httpx's own transport (httpcore + h11)? CPU. On the 2-core machine this product is
benchmarked on, httpcore spends about 1 ms of pure-Python work per request (some 2,000 function
calls: anyio wrappers, h11's state machine, pool bookkeeping), so one delivery process topped out
near 800 requests/s, short of issue #6's 1,000 unbatched events/s. The same requests written to
an asyncio protocol and parsed by httptools (llhttp, in C, already installed with
``uvicorn[standard]``) cost a few dozen calls each: measured 16k vs 0.6k requests/s against the
same local receiver (``bench/deliver.py`` prints both).

httpx stays the interface: ``handle_async_request`` takes ``httpx.Request`` objects and returns
``httpx.Response`` objects (content decoding included), errors are httpx's exception classes,
and tests can hand the sender any other httpx transport. The sender's hot path skips those
objects: ``send`` takes a parsed URL, a header list and the body bytes and returns the raw
answer (issue #18: the objects cost more CPU than the exchange; ``bench/transport.py``). What this transport does *not* do, because vendor APIs
don't need it: HTTP/2, HEAD requests, upgrades, streaming response bodies (a response is read
whole, capped at ``max_response_bytes``; the rest is discarded and the response marked
``extensions["truncated"]``).

Proxies (``proxy.py``): ``proxy="http://[user:pass@]host:port"`` sends every request through
that proxy (corporate networks often allow egress no other way). ``http://`` targets go to the proxy in
absolute form (``POST http://vendor.example/path HTTP/1.1``); ``https://`` targets get a
``CONNECT host:port`` tunnel that is then upgraded to TLS with the target, verified against the
target's certificate (the proxy sees only ciphertext), and pooled like a direct connection.
Credentials go in ``Proxy-Authorization: Basic`` and never into an exception: errors name the
proxy as host:port only. A CONNECT refused is ``httpx.ProxyError`` (so is a 407 answer to a
forwarded http request: no origin server sends 407, and a dead letter for a proxy's password
would be wrong). TLS to the proxy itself (``https://`` proxy URLs) and SOCKS are not supported:
the constructor raises ``ValueError``. Which requests use a proxy (``HTTPS_PROXY``,
``NO_PROXY`` ...) is the sender's choice: it holds one transport per proxy.

Pooling: per origin (scheme, host, port) at most ``max_connections`` requests in flight, each on
its own connection; finished connections wait idle for reuse for ``keepalive_expiry`` seconds.
A request that finds a reused connection already closed by the server (before any answer byte)
is sent once more on a fresh connection, as browsers and httpcore do.

Egress rules (``guard``, ``egress_guard.py``): with a guard, a direct connection resolves the
host through the guard, which refuses internal addresses, and connects to a checked address
(trying each in turn), never to the name; through a proxy only the target's spelling is checked
(the proxy resolves it) and the proxy's own address is the operator's choice. Without a guard
(``SWITCHBOARD_ALLOW_PRIVATE_EGRESS=true``, or tests of the transport itself) the name goes to
``create_connection`` as before.

Timeouts come from the request's ``timeout`` extension (httpx's dict): ``pool`` to get a slot,
``connect`` to connect (and, through a proxy, CONNECT and TLS), ``read`` for the whole answer
after the request is written.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any

import httptools
import httpx

from server.delivery.egress_guard import EgressGuard
from server.delivery.proxy import Proxy, open_tunnel

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024

# (status, reason phrase, raw headers, body, truncated): one exchange's answer.
Answer = tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]


class _Stale(Exception):
    """A reused connection turned out closed before any byte of the answer: safe to resend."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time."""

    def __init__(self, max_body: int):
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self.used = False  # has carried a request before (a candidate for _Stale)
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._truncated = False
        self._framed = False  # Content-Length or chunked: an early EOF is an error, not the end
        self._headers_done = False
        self._got_bytes = False

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self._fail(httpx.RemoteProtocolError("the server sent data without being asked"))
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self._answer
        if answer is None or answer.done():
            return
        if self._headers_done and not self._framed:
            self._complete(keep_alive=False)  # the body was delimited by the close
        elif not self._got_bytes and self.used:
            answer.set_exception(_Stale())
        else:
            answer.set_exception(httpx.RemoteProtocolError(
                "the server closed the connection before the answer was complete"))

    # ------------------------------------------------------------ httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        room = self.max_body - self._size
        if len(body) > room:
            body, self._truncated = body[:room], True
        if body:
            self._body.append(body)
            self._size += len(body)
        if self._truncated:  # answer at the cap now: the rest may be huge or endless (this closes)
            self._complete(keep_alive=False)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._reset()
            self._got_bytes = True
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # ------------------------------------------------------------ requests

    def _complete(self, keep_alive: bool) -> None:
        if not keep_alive or self._truncated:
            self.close()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((self._status, self._reason, self._headers, b"".join(self._body),
                                     self._truncated))

    def _fail(self, exc: Exception) -> None:
        self.close()
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, data: bytes, timeout: float | None):
        """Write one request and wait for its whole answer (at most ``timeout`` seconds: a timer
        on the loop, cheaper than a ``wait_for`` task per request)."""
        self._reset()
        loop = asyncio.get_running_loop()
        self._answer = answer = loop.create_future()
        self.transport.write(data)  # type: ignore[union-attr]
        timer = None if timeout is None else loop.call_later(timeout, self._time_out, answer, timeout)
        try:
            return await answer
        finally:
            if timer is not None:
                timer.cancel()
            self._answer = None
            self.used = True
            self.idle_since = time.monotonic()

    def _time_out(self, answer: asyncio.Future, timeout: float) -> None:
        if not answer.done():
            self.close()
            answer.set_exception(httpx.ReadTimeout(f"no complete answer within {timeout:g}s"))


class _Origin:
    """The pool of one (scheme, host, port)."""

    def __init__(self, limit: int):
        self.slots = asyncio.Semaphore(limit)
        self.idle: deque[_Connection] = deque()


class HTTP11Transport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 64,
        keepalive_expiry: float = 5.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | httpx.URL | None = None,
        guard: EgressGuard | None = None,
    ):
        self._proxy = Proxy(proxy) if proxy is not None else None
        self._guard = guard
        self._ssl = ssl_context
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.max_response_bytes = max_response_bytes
        self._origins: dict[tuple[bytes, bytes, int], _Origin] = {}
        self._closed = False

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # loading the CA bundle takes a while: only once, and only for https
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":  # checked before reading the body, as before
            raise httpx.UnsupportedProtocol("HEAD requests are not supported by this transport")
        body = await request.aread()
        status, reason, headers, content, truncated = await self.send(
            request.method, request.url, request.headers.raw, body, request.extensions.get("timeout") or {})
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(content), request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason, "truncated": truncated},
        )

    async def send(self, method: str, url: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes,
                   timeouts: dict) -> Answer:
        """One exchange without httpx's request and response objects: (status, reason, raw
        headers, body, truncated). The sender's hot path: building and reading those objects
        cost more CPU than the exchange itself (``bench/deliver_profile.py --profile``).
        ``headers`` are sent as given (Host and Content-Length added when missing); the body
        is not decoded (``Content-Encoding`` is the caller's)."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        if method == "HEAD":
            raise httpx.UnsupportedProtocol("HEAD requests are not supported by this transport")
        # Through a proxy an http request names its whole URL (absolute form); https tunnels don't.
        forward = self._proxy if self._proxy is not None and url.scheme == "http" else None
        data = _serialise(method, url, headers, body, forward)
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.raw_scheme, url.raw_host, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(self.max_connections)
        slots = origin.slots
        if slots.locked():  # the pool is full: wait for a slot, at most the pool timeout
            try:
                await asyncio.wait_for(slots.acquire(), timeouts.get("pool"))
            except asyncio.TimeoutError:
                raise httpx.PoolTimeout("no free connection in time") from None
        else:
            await slots.acquire()  # free: taken at once (no wait_for task)
        try:
            answer = await self._exchange(origin, url, port, data, timeouts)
        finally:
            slots.release()
        if answer[0] == 407 and forward is not None:
            raise httpx.ProxyError(f"proxy authentication failed: the proxy {forward.label} answered 407")
        return answer

    async def _exchange(self, origin: _Origin, url: httpx.URL, port: int, data: bytes, timeouts: dict):
        while True:
            connection = self._idle(origin)
            if connection is None:
                connection = await self._connect(url, port, timeouts.get("connect"))
            try:
                answer = await connection.exchange(data, timeouts.get("read"))
            except _Stale:
                continue  # closed while idle: send it again on another (or a new) connection
            except BaseException:
                connection.close()  # timed out, failed or cancelled mid-answer: never reuse it
                raise
            if self._closed:  # aclose() ran while it was in flight: no pool would ever close it
                connection.close()
            elif not connection.closed:
                origin.idle.append(connection)
            return answer

    def _idle(self, origin: _Origin) -> _Connection | None:
        now = time.monotonic()
        while origin.idle:
            connection = origin.idle.pop()  # the most recently used: the least likely to be stale
            if not connection.closed and now - connection.idle_since < self.keepalive_expiry:
                return connection
            connection.close()
        return None

    async def _connect(self, url: httpx.URL, port: int, timeout: float | None) -> _Connection:
        if self._proxy is not None:
            return await self._connect_via_proxy(self._proxy, url, port, timeout)
        https = url.scheme == "https"
        host = url.raw_host.decode("ascii")  # IDNA-encoded, IPv6 without brackets: what DNS and SNI want
        try:
            _, connection = await asyncio.wait_for(self._open(host, port, https), timeout)
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(f"could not connect to {host}:{port} within {timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, DNS, certificate
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc}") from exc
        return connection

    async def _open(self, host: str, port: int, https: bool):
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {"ssl": self.ssl_context, "server_hostname": host} if https else {}
        if self._guard is None:
            return await loop.create_connection(lambda: _Connection(self.max_response_bytes), host, port, **tls)
        addresses = await self._guard.addresses(host, port)  # raises EgressRefused before any connect
        for index, address in enumerate(addresses):
            try:
                return await loop.create_connection(lambda: _Connection(self.max_response_bytes), address, port,
                                                    **tls)
            except OSError:
                if index == len(addresses) - 1:
                    raise

    async def _connect_via_proxy(self, proxy: Proxy, url: httpx.URL, port: int,
                                 timeout: float | None) -> _Connection:
        host = url.raw_host.decode("ascii")
        if self._guard is not None:
            self._guard.check_host(host)
        try:
            return await asyncio.wait_for(self._open_via_proxy(proxy, url.scheme == "https", host, port), timeout)
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(
                f"could not connect to {host}:{port} through the proxy {proxy.label} within {timeout:g}s") from None

    async def _open_via_proxy(self, proxy: Proxy, https: bool, host: str, port: int) -> _Connection:
        """A connection to the proxy; for an https target, tunnelled (CONNECT) and then TLS to the target."""
        if https:
            return await open_tunnel(  # type: ignore[return-value]  # the protocol made here: a _Connection
                proxy, host, port, self.ssl_context, lambda: _Connection(self.max_response_bytes))
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: _Connection(self.max_response_bytes), proxy.host, proxy.port)
        except OSError as exc:  # refused, unreachable, DNS: the proxy's, so name it
            raise httpx.ConnectError(f"could not connect to the proxy {proxy.label}: {exc}") from exc
        return connection

    async def aclose(self) -> None:
        self._closed = True
        for origin in self._origins.values():
            while origin.idle:
                origin.idle.pop().close()
        self._origins.clear()


def _serialise(method: str, url: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes,
               forward: Proxy | None = None) -> bytes:
    """The request's bytes: request line, headers (framed by Content-Length), body.

    A Host header is added when ``headers`` have none (httpx's requests always carry one).
    Through a proxy (``forward``) the target is the absolute URL and the proxy's credentials
    are added."""
    target = url.raw_path or b"/"
    lines = [method.encode("ascii") + b" "
             + (target if forward is None else url.raw_scheme + b"://" + url.netloc + target) + b" HTTP/1.1"]
    if forward is not None and forward.authorization is not None:
        lines.append(b"Proxy-Authorization: " + forward.authorization)
    host_at = len(lines)  # the Host line goes first among the headers, as httpx orders it
    has_length = has_host = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            continue  # the body is read whole: framed by Content-Length instead
        if lower == b"content-length":
            has_length = True
        elif lower == b"host":
            has_host = True
        if b"\r" in value or b"\n" in value or b"\0" in value or not name or b":" in name \
                or b"\r" in name or b"\n" in name or b"\0" in name:
            raise httpx.LocalProtocolError(f"illegal header {name!r}: line breaks and NULs are not allowed")
        lines.append(name + b": " + value)
    if not has_host:
        lines.insert(host_at, b"Host: " + url.netloc)
    if not has_length and (body or method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if b" " in target or b"\r" in target or b"\n" in target:
        raise httpx.LocalProtocolError("illegal request target")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body

"""HTTP11Transport against real servers on 127.0.0.1: small raw asyncio servers written here, so
each test controls the exact bytes on the wire and counts the connections it accepts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import socket
import ssl
import time
from urllib.parse import urlsplit

import httpx
import pytest
import trustme

from server.delivery.transport import HTTP11Transport

pytestmark = pytest.mark.timeout(30)  # a hang fails one test, not the whole run


def response(body: bytes = b"ok", status: str = "200 OK", headers: tuple[str, ...] = ()) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Listener:
    """An asyncio server on a free port for ``async with``: ``_client`` runs per connection;
    leaving closes the server and every connection it accepted, and waits for the handlers."""

    host = "127.0.0.1"
    ssl_context: ssl.SSLContext | None = None

    def __init__(self):
        self.port = 0
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._client, self.host, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()
        # End handlers by closing their sockets (on 3.11 a cancelled handler task logs an error).
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)


class Server(Listener):
    """A raw HTTP server: ``handler(server, reader, writer)`` runs once per connection.

    It counts connections accepted, connections open at once (peak), requests as received
    (head, body) and EOFs seen from the client (via ``read_request``)."""

    def __init__(self, handler, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        super().__init__()
        self.handler = handler
        self.host = host
        self.ssl_context = ssl_context
        self.connections = 0
        self.open = 0
        self.peak_open = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.eofs = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl_context else 'http'}://{host}:{self.port}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        self._writers.append(writer)
        self.connections += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        """One request (head, body), or None when the client closed the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eofs += 1
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        self.requests.append((head, body))
        return head, body


def keep_alive(body: bytes = b"ok", delay: float = 0.0, headers: tuple[str, ...] = ()):
    """A well-behaved keep-alive server answering every request with ``body``."""

    async def handler(server: Server, reader, writer) -> None:
        while await server.read_request(reader) is not None:
            server.in_flight += 1
            server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
            await asyncio.sleep(delay)
            server.in_flight -= 1
            writer.write(response(body, headers=headers))
            await writer.drain()

    return handler


def answer_once(raw: bytes, close: bool = True):
    """Read one request, write ``raw`` bytes, close (or wait for the client to close)."""

    async def handler(server: Server, reader, writer) -> None:
        if await server.read_request(reader) is None:
            return
        writer.write(raw)
        await writer.drain()
        if not close:
            await server.read_request(reader)

    return handler


async def hang(server: Server, reader, writer) -> None:
    """Read requests and never answer; notice when the client gives up (EOF)."""
    while await server.read_request(reader) is not None:
        pass


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def fetch(transport: HTTP11Transport, method: str, url: str, timeout=5.0, **kwargs) -> httpx.Response:
    timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
    request = httpx.Request(method, url, extensions={"timeout": timeout.as_dict()}, **kwargs)
    response = await transport.handle_async_request(request)
    await response.aread()
    return response


def run(test):
    """Run ``test(transport)`` (a coroutine function) with a fresh transport, closed afterwards."""

    def wrapper(**transport_options):
        async def main():
            transport = HTTP11Transport(**transport_options)
            try:
                await test(transport)
            finally:
                await transport.aclose()

        asyncio.run(main())

    return wrapper


# ------------------------------------------------------------------ keep-alive and pooling


def test_sequential_requests_share_one_connection():
    @run
    async def check(transport):
        async with Server(keep_alive(b"hello")) as server:
            for _ in range(20):
                response = await fetch(transport, "GET", server.url + "/")
                assert (response.status_code, response.content) == (200, b"hello")
            assert server.connections == 1

    check()


def test_concurrent_requests_reuse_at_most_one_connection_each():
    @run
    async def check(transport):
        async with Server(keep_alive(delay=0.002)) as server:
            for _ in range(10):
                responses = await asyncio.gather(*(fetch(transport, "GET", server.url) for _ in range(16)))
                assert [r.status_code for r in responses] == [200] * 16
            assert server.connections <= 16

    check()


def test_max_connections_caps_concurrent_connections():
    @run
    async def check(transport):
        async with Server(keep_alive(delay=0.01)) as server:
            for _ in range(3):
                responses = await asyncio.gather(*(fetch(transport, "GET", server.url) for _ in range(16)))
                assert [r.content for r in responses] == [b"ok"] * 16
            assert server.peak_in_flight == 4
            assert server.peak_open <= 4 and server.connections <= 4

    check(max_connections=4)


# ------------------------------------------------------------------ response framing


def test_ipv6_literal_host_connects_without_brackets_and_sends_them_in_host():
    @run
    async def check(transport):
        async with Server(keep_alive(b"v6"), host="::1") as server:
            response = await fetch(transport, "GET", server.url + "/x")
            assert (response.status_code, response.content) == (200, b"v6")
            head = server.requests[0][0].decode()
            assert f"\r\nHost: [::1]:{server.port}\r\n" in head

    check()


def test_content_length_body():
    @run
    async def check(transport):
        async with Server(answer_once(response(b"x" * 100_000, headers=("X-Vendor: 1",)), close=False)) as server:
            response_ = await fetch(transport, "GET", server.url)
            assert response_.content == b"x" * 100_000 and response_.headers["x-vendor"] == "1"

    check()


def test_chunked_body_in_several_chunks():
    async def handler(server, reader, writer):
        while await server.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for chunk in (b"first,", b"second,", b"third"):
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                await asyncio.sleep(0.001)
            writer.write(b"0\r\n\r\n")

    @run
    async def check(transport):
        async with Server(handler) as server:
            for _ in range(2):
                assert (await fetch(transport, "GET", server.url)).content == b"first,second,third"
            assert server.connections == 1  # chunked framing keeps the connection reusable

    check()


def test_close_delimited_body_is_complete_and_connection_not_reused():
    @run
    async def check(transport):
        async with Server(answer_once(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")) as server:
            for _ in range(2):
                assert (await fetch(transport, "GET", server.url)).content == b"until the end"
            assert server.connections == 2

    check()


def test_204_without_body():
    @run
    async def check(transport):
        async with Server(answer_once(b"HTTP/1.1 204 No Content\r\n\r\n", close=False)) as server:
            response_ = await fetch(transport, "POST", server.url, content=b"{}")
            assert (response_.status_code, response_.content) == (204, b"")

    check()


@pytest.mark.parametrize("pause", [False, True], ids=["same-packet", "separate-packets"])
def test_interim_100_continue_is_skipped(pause):
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if pause:
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(response(b"final", status="201 Created"))
        await server.read_request(reader)

    @run
    async def check(transport):
        async with Server(handler) as server:
            response_ = await fetch(transport, "POST", server.url, content=b"data")
            assert (response_.status_code, response_.content) == (201, b"final")

    check()


def test_gzip_response_is_decoded():
    body = gzip.compress(b"compressed " * 1000)

    @run
    async def check(transport):
        async with Server(keep_alive(body, headers=("Content-Encoding: gzip",))) as server:
            assert (await fetch(transport, "GET", server.url)).content == b"compressed " * 1000

    check()


# ------------------------------------------------------------------ the request on the wire


def test_request_bytes_are_exact():
    @run
    async def check(transport):
        async with Server(keep_alive()) as server:
            await fetch(transport, "POST", server.url + "/v1/track?key=a%20b&x=1",
                        headers={"X-Api-Key": "secret", "User-Agent": "Switchboard/1.0"}, content=b"payload")
            (head, body), = server.requests
            assert head.split(b"\r\n") == [
                b"POST /v1/track?key=a%20b&x=1 HTTP/1.1", f"Host: 127.0.0.1:{server.port}".encode(),
                b"X-Api-Key: secret", b"User-Agent: Switchboard/1.0", b"Content-Length: 7", b"", b"",
            ]
            assert body == b"payload"

    check()


def test_form_and_json_bodies():
    @run
    async def check(transport):
        async with Server(keep_alive()) as server:
            await fetch(transport, "POST", server.url + "/form", data={"event": "Sign up", "n": "1"})
            await fetch(transport, "PUT", server.url + "/json", json={"event": "Sign up", "name": "é"})
            (form_head, form_body), (json_head, json_body) = server.requests
            assert form_head.startswith(b"POST /form HTTP/1.1\r\n")
            assert b"Content-Type: application/x-www-form-urlencoded" in form_head
            assert b"Content-Length: %d\r\n" % len(form_body) in form_head
            assert form_body == b"event=Sign+up&n=1"
            assert json_head.startswith(b"PUT /json HTTP/1.1\r\n")
            assert b"Content-Type: application/json" in json_head
            assert b"Content-Length: %d\r\n" % len(json_body) in json_head
            assert json.loads(json_body) == {"event": "Sign up", "name": "é"}

    check()


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb"])
def test_header_with_line_break_is_refused_before_sending(value):
    @run
    async def check(transport):
        async with Server(keep_alive()) as server:
            with pytest.raises(httpx.LocalProtocolError):
                await fetch(transport, "GET", server.url, headers={"X-Bad": value})
            assert server.connections == 0

    check()


# ------------------------------------------------------------------ servers that close or misbehave


def test_idle_connection_closed_by_server_is_not_reused():
    @run
    async def check(transport):
        async with Server(answer_once(response(b"once"))) as server:  # closes without saying so
            assert (await fetch(transport, "GET", server.url)).content == b"once"
            await until(lambda: server.open == 0)
            await asyncio.sleep(0.02)  # the client notices the close while idle
            assert (await fetch(transport, "POST", server.url, content=b"second")).content == b"once"
            assert server.connections == 2
            assert [body for _, body in server.requests] == [b"", b"second"]

    check()


def test_request_crossing_the_servers_idle_close_is_resent_on_a_new_connection():
    async def handler(server, reader, writer):
        first = server.connections == 1
        await server.read_request(reader)
        writer.write(response(b"answered"))
        await writer.drain()
        if first:  # the idle close crosses the next request: it gets no answer, not even a byte
            await reader.read(1)

    @run
    async def check(transport):
        async with Server(handler) as server:
            await fetch(transport, "GET", server.url)
            response_ = await fetch(transport, "POST", server.url, content=b"resend me")
            assert response_.content == b"answered"
            assert server.connections == 2
            assert [body for _, body in server.requests] == [b"", b"resend me"]  # answered once

    check()


def test_close_before_answer_on_fresh_connection_is_an_error_not_resent():
    @run
    async def check(transport):
        async with Server(answer_once(b"")) as server:
            with pytest.raises(httpx.RemoteProtocolError):
                await fetch(transport, "POST", server.url, content=b"once")
            assert server.connections == 1 and len(server.requests) == 1

    check()


def test_truncated_content_length_body_is_an_error():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it"

    @run
    async def check(transport):
        async with Server(answer_once(raw)) as server:
            with pytest.raises(httpx.RemoteProtocolError):
                await fetch(transport, "GET", server.url)

    check()


@pytest.mark.parametrize("raw", [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
def test_malformed_response_is_a_protocol_error_and_closes(raw):
    @run
    async def check(transport):
        async with Server(answer_once(raw, close=False)) as server:
            with pytest.raises(httpx.RemoteProtocolError):
                await fetch(transport, "GET", server.url)
            await until(lambda: server.eofs == 1)

    check()


# ------------------------------------------------------------------ failures, timeouts, cancellation


def test_connection_refused_is_a_connect_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens on it once closed

    @run
    async def check(transport):
        with pytest.raises(httpx.ConnectError):
            await fetch(transport, "GET", f"http://127.0.0.1:{port}/")

    check()


def test_silent_server_is_a_read_timeout_and_the_connection_is_closed():
    @run
    async def check(transport):
        async with Server(hang) as server:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await fetch(transport, "GET", server.url, timeout=0.2)
            assert 0.15 < time.monotonic() - started < 2.0
            await until(lambda: server.eofs == 1)

    check()


def test_no_free_slot_in_time_is_a_pool_timeout():
    @run
    async def check(transport):
        async with Server(hang) as server:
            stuck = asyncio.create_task(fetch(transport, "GET", server.url))
            await until(lambda: len(server.requests) == 1)
            with pytest.raises(httpx.PoolTimeout):
                await fetch(transport, "GET", server.url, timeout=httpx.Timeout(5.0, pool=0.05))
            assert server.connections == 1
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck

    check(max_connections=1)


def test_cancelled_request_closes_its_connection_and_frees_its_slot():
    async def handler(server, reader, writer):
        if server.connections == 1:
            await hang(server, reader, writer)
        else:
            await keep_alive()(server, reader, writer)

    @run
    async def check(transport):
        async with Server(handler) as server:
            stuck = asyncio.create_task(fetch(transport, "GET", server.url))
            await until(lambda: len(server.requests) == 1)
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
            await until(lambda: server.eofs == 1)
            response_ = await fetch(transport, "GET", server.url, timeout=httpx.Timeout(5.0, pool=1.0))
            assert response_.content == b"ok" and server.connections == 2

    check(max_connections=1)


# ------------------------------------------------------------------ response size cap


def test_response_over_the_cap_is_truncated():
    @run
    async def check(transport):
        async with Server(keep_alive(b"y" * 5000)) as server:
            response_ = await fetch(transport, "GET", server.url)
            assert response_.status_code == 200
            assert response_.content == b"y" * 1000 and response_.extensions["truncated"] is True
            assert (await fetch(transport, "GET", server.url)).extensions["truncated"] is True
            assert server.connections == 2  # the rest of a truncated body is never read as an answer

    check(max_response_bytes=1000)


def test_endless_response_returns_at_the_cap_without_waiting_for_its_end():
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # a body that never ends
            writer.write(b"400\r\n" + b"z" * 1024 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.001)

    @run
    async def check(transport):
        async with Server(handler) as server:
            response_ = await fetch(transport, "GET", server.url, timeout=2.0)
            assert response_.content == b"z" * 4000 and response_.extensions["truncated"] is True

    check(max_response_bytes=4000)


def test_small_response_is_not_marked_truncated():
    @run
    async def check(transport):
        async with Server(keep_alive(b"y" * 1000)) as server:
            assert (await fetch(transport, "GET", server.url)).extensions["truncated"] is False

    check(max_response_bytes=1000)


# ------------------------------------------------------------------ https


@pytest.fixture(scope="module")
def tls():
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


def test_https_with_a_context_trusting_the_ca(tls):
    server_context, client_context = tls

    @run
    async def check(transport):
        async with Server(keep_alive(b"secure"), ssl_context=server_context) as server:
            for _ in range(3):
                assert (await fetch(transport, "GET", server.url)).content == b"secure"
            assert server.connections == 1

    check(ssl_context=client_context)


def test_https_with_an_untrusted_certificate_is_a_connect_error(tls):
    server_context, _ = tls

    @run
    async def check(transport):
        async with Server(keep_alive(), ssl_context=server_context) as server:
            with pytest.raises(httpx.ConnectError):
                await fetch(transport, "GET", server.url)

    check()


# ------------------------------------------------------------------ closing and expiry


def test_aclose_closes_idle_connections():
    async def main():
        transport = HTTP11Transport()
        async with Server(keep_alive()) as server:
            response = await fetch(transport, "GET", server.url)
            assert response.status_code == 200 and server.eofs == 0  # kept alive, idle in the pool
            await transport.aclose()
            await until(lambda: server.eofs == 1)
            assert server.connections == 1 and server.eofs == 1  # the one idle connection, closed

    asyncio.run(main())


def test_connection_of_a_request_in_flight_during_aclose_is_closed_when_it_ends():
    release = None

    async def handler(server, reader, writer):
        await server.read_request(reader)
        await release.wait()
        writer.write(response())
        await server.read_request(reader)

    async def main():
        nonlocal release
        release = asyncio.Event()
        transport = HTTP11Transport()
        async with Server(handler) as server:
            in_flight = asyncio.create_task(fetch(transport, "GET", server.url))
            await until(lambda: len(server.requests) == 1)
            await transport.aclose()
            release.set()
            assert (await in_flight).content == b"ok"
            await until(lambda: server.eofs == 1)

    asyncio.run(main())


def test_connection_idle_past_keepalive_expiry_is_not_reused():
    @run
    async def check(transport):
        async with Server(keep_alive()) as server:
            await fetch(transport, "GET", server.url)
            await fetch(transport, "GET", server.url)
            assert server.connections == 1
            await asyncio.sleep(0.15)
            await fetch(transport, "GET", server.url)
            assert server.connections == 2
            await until(lambda: server.eofs == 1)  # the expired one was closed, not leaked

    check(keepalive_expiry=0.1)


# ------------------------------------------------------------------ through a forward proxy


class ForwardProxy(Listener):
    """A real forward proxy on 127.0.0.1: absolute-form http requests are forwarded to their
    target (one upstream connection per client connection and target, kept alive), CONNECT is
    tunnelled byte for byte. With ``credentials`` it wants ``Proxy-Authorization: Basic`` and
    answers 407 otherwise; ``refuse`` answers every CONNECT with that status instead.

    It keeps every request head it received and the bytes it carried through tunnels."""

    def __init__(self, credentials: tuple[str, str] | None = None, refuse: int | None = None):
        super().__init__()
        self.credentials = credentials
        self.refuse = refuse
        self.heads: list[bytes] = []
        self.connections = 0
        self.upstream_connections = 0
        self.tunnelled_up = bytearray()  # client -> target, after CONNECT
        self.tunnelled_down = bytearray()  # target -> client

    def url(self, user: str | None = None, password: str | None = None) -> str:
        userinfo = f"{user}:{password}@" if user is not None else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    async def _open(self, host: str, port: int):
        reader, writer = await asyncio.open_connection(host, port)
        self._writers.append(writer)
        self.upstream_connections += 1
        return reader, writer

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        self._writers.append(writer)
        self.connections += 1
        upstreams: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                request_line, *lines = head[:-4].split(b"\r\n")
                method, target, _ = request_line.split(b" ")
                headers = [line.partition(b":")[::2] for line in lines]
                values = {name.strip().lower(): value.strip() for name, value in headers}
                body = await reader.readexactly(int(values.get(b"content-length", 0)))
                if self.credentials is not None:
                    token = base64.b64encode(":".join(self.credentials).encode())
                    if values.get(b"proxy-authorization") != b"Basic " + token:
                        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                     b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n')
                        await writer.drain()
                        if method == b"CONNECT":
                            return
                        continue
                if method == b"CONNECT":
                    if self.refuse is not None:
                        writer.write(f"HTTP/1.1 {self.refuse} Nope\r\nContent-Length: 0\r\n\r\n".encode())
                        return
                    host, _, port = target.decode().rpartition(":")
                    up_reader, up_writer = await self._open(host.strip("[]"), int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await asyncio.gather(self._pipe(reader, up_writer, self.tunnelled_up),
                                         self._pipe(up_reader, writer, self.tunnelled_down))
                    return
                url = urlsplit(target.decode())
                assert url.scheme == "http" and url.hostname, f"not an absolute-form request: {request_line!r}"
                key = (url.hostname, url.port or 80)
                if key not in upstreams:
                    upstreams[key] = await self._open(*key)
                up_reader, up_writer = upstreams[key]
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                kept = [name + b":" + value for name, value in headers if name.lower() != b"proxy-authorization"]
                up_writer.write(b"\r\n".join([method + b" " + path.encode() + b" HTTP/1.1", *kept]) + b"\r\n\r\n"
                                + body)
                answer = await up_reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in answer.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                writer.write(answer + await up_reader.readexactly(length))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            for _, up_writer in upstreams.values():
                up_writer.close()
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: bytearray) -> None:
        try:
            while data := await reader.read(65536):
                seen += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def proxied(test):
    """Run ``test(transport, proxy)`` with a fresh ForwardProxy and a transport sent through it."""

    def wrapper(credentials=None, refuse=None, user=None, password=None, **transport_options):
        async def main():
            async with ForwardProxy(credentials, refuse) as proxy:
                transport = HTTP11Transport(proxy=proxy.url(user, password), **transport_options)
                try:
                    await test(transport, proxy)
                finally:
                    await transport.aclose()

        asyncio.run(main())

    return wrapper


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def test_http_target_through_a_proxy_is_sent_in_absolute_form_and_arrives_once():
    @proxied
    async def check(transport, proxy):
        async with Server(keep_alive(b"hello")) as target:
            response_ = await fetch(transport, "POST", f"{target.url}/track?write_key=k1", content=b'{"a":1}')
            assert response_.status_code == 200 and response_.content == b"hello"
            assert len(proxy.heads) == 1
            assert proxy.heads[0].startswith(f"POST {target.url}/track?write_key=k1 HTTP/1.1\r\n".encode())
            assert header(proxy.heads[0], b"host") == f"127.0.0.1:{target.port}".encode()
            assert header(proxy.heads[0], b"proxy-authorization") is None  # no credentials, none sent
            assert len(target.requests) == 1
            head, body = target.requests[0]
            assert head.startswith(b"POST /track?write_key=k1 HTTP/1.1\r\n") and body == b'{"a":1}'

    check()


def test_proxy_credentials_are_sent_as_basic_proxy_authorization_percent_decoded():
    @proxied
    async def check(transport, proxy):
        async with Server(keep_alive()) as target:
            assert (await fetch(transport, "GET", target.url)).status_code == 200
            token = base64.b64encode(b"alice:p@ss word").decode()
            assert header(proxy.heads[0], b"proxy-authorization") == f"Basic {token}".encode()
            assert header(target.requests[0][0], b"proxy-authorization") is None

    check(credentials=("alice", "p@ss word"), user="alice", password="p%40ss%20word")


def test_keep_alive_through_a_proxy_reuses_one_connection_per_target():
    @proxied
    async def check(transport, proxy):
        async with Server(keep_alive()) as target:
            for _ in range(3):
                assert (await fetch(transport, "POST", target.url, content=b"x")).content == b"ok"
            assert proxy.connections == 1 and proxy.upstream_connections == 1 and target.connections == 1
            assert len(target.requests) == 3

    check()


def test_https_target_is_tunnelled_with_connect_and_tls_is_verified_against_the_target(tls):
    server_context, client_context = tls
    secret_body = b"only-the-target-may-read-this-7f3a9c"

    @proxied
    async def check(transport, proxy):
        async with Server(keep_alive(b"answer-for-the-client-only-41d2e8"), ssl_context=server_context) as target:
            for _ in range(3):  # and the tunnel is kept alive like a direct connection
                response_ = await fetch(transport, "POST", f"{target.url}/v1/track", content=secret_body)
                assert response_.content == b"answer-for-the-client-only-41d2e8"
            authority = f"127.0.0.1:{target.port}".encode()
            assert proxy.heads == [b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n\r\n"]
            assert proxy.connections == 1 and target.connections == 1 and len(target.requests) == 3
            assert target.requests[0][0].startswith(b"POST /v1/track HTTP/1.1\r\n")  # origin form inside
            # The proxy carried TLS records (0x16: a handshake record first), never the plaintext.
            assert proxy.tunnelled_up[:1] == b"\x16" and proxy.tunnelled_down[:1] == b"\x16"
            assert secret_body not in proxy.tunnelled_up and b"/v1/track" not in proxy.tunnelled_up
            assert b"answer-for-the-client-only" not in proxy.tunnelled_down

    check(ssl_context=client_context)


def test_https_target_with_an_untrusted_certificate_through_a_proxy_is_a_connect_error(tls):
    server_context, _ = tls  # the transport trusts only the default CAs, not the test CA

    @proxied
    async def check(transport, proxy):
        async with Server(keep_alive(), ssl_context=server_context) as target:
            with pytest.raises(httpx.ConnectError) as failed:
                await fetch(transport, "GET", target.url)
            assert f"127.0.0.1:{target.port} through the proxy 127.0.0.1:{proxy.port}" in str(failed.value)
            assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
            assert target.requests == []

    check()


def test_wrong_proxy_password_is_a_proxy_error_without_the_password(tls):
    server_context, client_context = tls

    @proxied
    async def check(transport, proxy):
        async with Server(keep_alive(), ssl_context=server_context) as secure, Server(keep_alive()) as plain:
            for url in (secure.url, plain.url):
                with pytest.raises(httpx.ProxyError) as failed:
                    await fetch(transport, "GET", url)
                message = str(failed.value)
                assert "407" in message and "proxy authentication failed" in message
                assert f"127.0.0.1:{proxy.port}" in message
                assert "wrong-pass-9f8e" not in message and "alice" not in message
                assert base64.b64encode(b"alice:wrong-pass-9f8e").decode() not in message
            assert secure.connections == 0 and plain.requests == []

    check(credentials=("alice", "right-pass"), user="alice", password="wrong-pass-9f8e", ssl_context=client_context)


def test_connect_refused_by_the_proxy_is_a_proxy_error_with_the_status():
    @proxied
    async def check(transport, proxy):
        with pytest.raises(httpx.ProxyError, match="403"):
            await fetch(transport, "GET", "https://vendor.invalid/v1")  # the proxy never resolves it
        assert proxy.heads[0].startswith(b"CONNECT vendor.invalid:443 HTTP/1.1\r\n")

    check(refuse=403)


def test_proxy_down_is_a_connect_error_naming_the_proxy_without_credentials():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens on it once closed

    async def main():
        transport = HTTP11Transport(proxy=f"http://alice:hunter2-secret@127.0.0.1:{port}")
        try:
            for url in ("http://vendor.invalid/", "https://vendor.invalid/"):
                with pytest.raises(httpx.ConnectError) as failed:
                    await fetch(transport, "POST", url, content=b"x")
                assert f"could not connect to the proxy 127.0.0.1:{port}" in str(failed.value)
                assert "hunter2-secret" not in str(failed.value) and "alice" not in str(failed.value)
        finally:
            await transport.aclose()

    asyncio.run(main())


def test_proxy_silent_after_connect_is_a_connect_timeout():
    async def silent(server, reader, writer):
        await reader.read()  # accepts the connection, never answers CONNECT

    async def main():
        async with Server(silent) as proxy:
            transport = HTTP11Transport(proxy=f"http://127.0.0.1:{proxy.port}")
            try:
                started = time.monotonic()
                with pytest.raises(httpx.ConnectTimeout, match=f"through the proxy 127.0.0.1:{proxy.port}"):
                    await fetch(transport, "GET", "https://vendor.invalid/", timeout=httpx.Timeout(5.0, connect=0.2))
                assert 0.15 < time.monotonic() - started < 2.0
                await until(lambda: proxy.open == 0)  # the half-made tunnel was closed
            finally:
                await transport.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("url, refusal", [
    ("https://alice:s3cret-pw@proxy.corp:3128", "https:// proxy URLs"),
    ("socks5://alice:s3cret-pw@proxy.corp:1080", "unsupported proxy URL scheme 'socks5'"),
    ("http://", "no host"),
])
def test_unsupported_proxy_urls_are_refused_at_construction_without_the_password(url, refusal):
    with pytest.raises(ValueError, match=refusal) as refused:
        HTTP11Transport(proxy=url)
    assert "s3cret-pw" not in str(refused.value)

"""One write per answer (server/api/edge/one_write.py): under our edge protocol a prepared answer
goes out as the very bytes uvicorn's two-message path writes, in one write, with keep-alive,
pipelining and ``Connection: close`` kept; a wrapped ``send`` falls back to ASGI."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn

from pgserver import free_port, wait_for_port
from server.api.edge import EdgeLimits, protocol_class
from server.api.edge.one_write import answer_writer
from server.ingest.asgi import Answer

BODY = b'{"success":true}'
HEADERS = [(b"access-control-allow-origin", b"https://shop.example"), (b"vary", b"Origin")]


@pytest.fixture(scope="module")
def server():
    used: list[str] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/fast":
            answer, write = Answer(200, BODY, HEADERS), answer_writer(send)
            used.append("one write" if write is not None and write(answer.status, answer.headers, answer.body)
                        else "asgi")
            if used[-1] == "asgi":
                await answer(scope, receive, send)
        else:  # a middleware's wrapper: no one-write path, uvicorn's two messages

            async def wrapped(message):
                await send(message)
            await Answer(200, BODY, HEADERS)(scope, receive, wrapped)

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol_class(EdgeLimits()), loop="asyncio",
                            log_level="warning", access_log=False, lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield port, used
    instance.should_exit = True
    thread.join(10)


def exchange(port: int, raw: bytes, answers: int = 1) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        deadline = time.monotonic() + 5
        while data.count(BODY) < answers and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def without_date(response: bytes) -> bytes:
    return b"\r\n".join(line for line in response.split(b"\r\n") if not line.startswith(b"date: "))


def request(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: edge.test", "Content-Length: 0", *extra]) + "\r\n\r\n").encode()


def test_one_write_sends_the_bytes_uvicorns_two_messages_send(server):
    port, used = server
    fast, slow = exchange(port, request("/fast")), exchange(port, request("/slow"))
    assert used[-1] == "one write", used
    assert without_date(fast) == without_date(slow)
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n") and fast.endswith(b"\r\n\r\n" + BODY)
    assert b"content-length: 16\r\n" in fast and b"access-control-allow-origin: https://shop.example\r\n" in fast


def test_keep_alive_pipelining_and_connection_close_are_kept(server):
    port, used = server
    both = exchange(port, request("/fast") + request("/fast"), answers=2)  # two requests in one read
    assert both.count(b"HTTP/1.1 200 OK") == 2 and both.count(BODY) == 2
    fast = exchange(port, request("/fast", "Connection: close"))
    slow = exchange(port, request("/slow", "Connection: close"))
    assert b"connection: close\r\n" in fast and without_date(fast) == without_date(slow)
    assert set(used) == {"one write"}


def test_a_wrapped_send_gets_no_one_write_path():
    async def send(message):
        pass
    assert answer_writer(send) is None
    assert answer_writer(asyncio.Queue().put) is None  # a bound method of something else

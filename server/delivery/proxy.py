"""Outbound forward proxies for the delivery transport (``transport.py``).

``Proxy`` parses an ``http://[user:pass@]host:port`` proxy URL (TLS to the proxy itself and SOCKS
are refused with ``ValueError``; messages never repeat the URL, which may hold a password).
``open_tunnel`` makes the connection an ``https://`` target needs: ``CONNECT host:port`` to the
proxy, then TLS with the target over the same socket, verified against the target's certificate
(the proxy sees only ciphertext). ``http://`` targets need no tunnel: the transport connects to
the proxy and writes absolute-form requests with ``Proxy.authorization``.

Errors name the proxy as host:port only: a CONNECT answered non-2xx is ``httpx.ProxyError``
(407: "proxy authentication failed"), a proxy that cannot be reached ``httpx.ConnectError``.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from typing import Callable

import httpx

MAX_PROXY_HEAD_BYTES = 64 * 1024


class Proxy:
    """An ``http://`` forward proxy: where it is, its label for messages, its credentials."""

    def __init__(self, url: str | httpx.URL):
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"invalid proxy URL: {exc}") from None
        # Messages name the scheme only, never the URL: it may hold a password.
        if parsed.scheme == "https":
            raise ValueError("https:// proxy URLs (TLS to the proxy itself) are not supported: use http://"
                             " (https targets are still TLS end to end, through CONNECT)")
        if parsed.scheme != "http":
            raise ValueError(f"unsupported proxy URL scheme {parsed.scheme!r}: only http:// proxies"
                             " are supported (no SOCKS)")
        if not parsed.raw_host:
            raise ValueError("the proxy URL has no host")
        self.host = parsed.raw_host.decode("ascii")
        self.port = parsed.port or 80
        self.label = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self.secrets: tuple[str, ...] = ()
        self.authorization: bytes | None = None
        if parsed.username or parsed.password:
            token = base64.b64encode(f"{parsed.username}:{parsed.password}".encode()).decode("ascii")
            self.authorization = f"Basic {token}".encode("ascii")
            self.secrets = tuple(s for s in (parsed.password, token) if s)

    def safe(self, text: str) -> str:
        """``text`` (say, a reason phrase the proxy chose) without our credentials in it."""
        for secret in self.secrets:
            text = text.replace(secret, "********")
        return text


class _ProxyHandshake(asyncio.Protocol):
    """A connection to the proxy until it has answered CONNECT: collects the answer's head."""

    def __init__(self, label: str):
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future = asyncio.get_running_loop().create_future()
        self.extra = False  # bytes after the head: the proxy spoke before TLS did
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            self.extra = True
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end >= 0:
            self.extra = end + 4 < len(self._buffer)
            self.head.set_result(bytes(self._buffer[:end]))
        elif len(self._buffer) > MAX_PROXY_HEAD_BYTES:
            self.head.set_exception(httpx.ProxyError(f"the proxy {self.label} sent an oversized answer to CONNECT"))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(httpx.ProxyError(
                f"the proxy {self.label} closed the connection without answering CONNECT"))


async def open_tunnel(proxy: Proxy, host: str, port: int, ssl_context: ssl.SSLContext,
                      make_connection: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
    """A TLS connection to ``host:port`` through ``proxy`` (CONNECT): ``make_connection()``'s
    protocol, its ``transport`` set to the TLS transport. The caller bounds the time it takes."""
    loop = asyncio.get_running_loop()
    try:
        raw, handshake = await loop.create_connection(lambda: _ProxyHandshake(proxy.label), proxy.host, proxy.port)
    except OSError as exc:  # refused, unreachable, DNS: the proxy's, so name it
        raise httpx.ConnectError(f"could not connect to the proxy {proxy.label}: {exc}") from exc
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if proxy.authorization is not None:
            lines.append("Proxy-Authorization: " + proxy.authorization.decode("ascii"))
        raw.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        status, reason = _status_line(await handshake.head, proxy)
        if not 200 <= status < 300:
            what = "proxy authentication failed" if status == 407 else "the proxy refused the tunnel"
            raise httpx.ProxyError(f"{what}: CONNECT {authority} through {proxy.label} answered {status}"
                                   f" {proxy.safe(reason)}".rstrip())
        if handshake.extra:
            raise httpx.ProxyError(f"the proxy {proxy.label} sent data after answering CONNECT")
        connection = make_connection()
        try:
            # The same socket now carries TLS with the target; start_tls does not call connection_made.
            connection.transport = await loop.start_tls(raw, connection, ssl_context, server_hostname=host)  # type: ignore[attr-defined]
        except (OSError, ssl.SSLError) as exc:  # certificate, or the tunnel closed mid-handshake
            raise httpx.ConnectError(
                f"could not connect to {host}:{port} through the proxy {proxy.label}: {exc}") from exc
        return connection
    except BaseException:  # refused, failed, timed out or cancelled: never leave the socket open
        raw.close()
        raise


def _status_line(head: bytes, proxy: Proxy) -> tuple[int, str]:
    """Status and reason of an answer's head (``HTTP/1.1 200 Connection established``)."""
    version, _, rest = head.split(b"\r\n", 1)[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpx.ProxyError(f"the proxy {proxy.label} sent a malformed answer to CONNECT")
    return int(code), reason.decode("latin-1")[:100]

"""The one HTTP sender every translator's requests go through.

One transport per process (``transport.py``: pooled keep-alive connections behind httpx's
request and response types), a 5 s default timeout, no redirects followed. ``perform`` runs a
job's requests in order (and their pure follow-ups), classifies each answer with the retry
policy and keeps a redacted record of each attempt.

Tests point vendor hosts at local servers with ``base_urls`` ({"api.mixpanel.com":
"http://127.0.0.1:5123"}) or hand in an httpx ``transport``. Both are constructor arguments
only: nothing a setting, a request or a browser can change.

Egress proxies come from the environment, read once when the sender is made, as curl, requests
and httpx read it: ``HTTPS_PROXY`` for https targets, ``HTTP_PROXY`` for http ones, ``ALL_PROXY``
for either when its own is unset (lower-case names win), and ``NO_PROXY`` (``urllib.request``'s
rules: ``*``, hosts, domains with or without a leading dot, ``host:port``; loopback is not
exempt unless listed). Each distinct proxy gets its own transport; the choice is cached per
origin, and with no proxy variable set no choice is made at all.

Egress rules: unless ``allow_private_egress``, the transports get an ``EgressGuard``, so a
target that is or resolves to an internal address is refused before any connection, and the
job becomes a dead letter with that reason. So does a request no retry can fix: a header the
rules in ``server/destinations/outgoing_headers.py`` refuse (saved before those rules existed), or one our
transport refuses to write. A transport handed in is the caller's: no guard is added to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies_environment, proxy_bypass_environment  # type: ignore[attr-defined]

import httpx
import orjson

from server.delivery.egress_guard import EgressGuard, EgressRefused, Resolver
from server.delivery.policy import is_retryable_status, retry_after_seconds
from server.destinations.request import OutgoingRequest
from server.delivery.transport import HTTP11Transport
from server.destinations.outgoing_headers import first_problem

DEFAULT_TIMEOUT_S = 5.0
EXCERPT_CHARS = 2000
REDACTED = "********"
MAX_FOLLOW_UPS = 5
MAX_ROUTES = 10_000  # origins whose proxy choice is remembered (webhook URLs are the users' to vary)

DELIVERED, RETRY, DEAD = "delivered", "retry", "dead"


@dataclass
class Attempt:
    outcome: str  # delivered | retry | dead
    request: dict[str, Any]
    status: int | None = None
    response: str | None = None
    error: str | None = None
    latency_ms: float = 0.0
    retry_after: float | None = None
    at: Any = None

    def row(self) -> dict[str, Any]:
        """The attempt's record (for ``store.finish``); made once, shared by every job of a
        batched request (treat it as read-only)."""
        row = self.__dict__.get("_row")
        if row is None or row["at"] is not self.at:
            row = self.__dict__["_row"] = self._make_row()
        return row

    def _make_row(self) -> dict[str, Any]:
        request, response = self.request, self.response
        if self.outcome == DELIVERED:
            # A success needs no forensics: keep the request line, not a second copy of the event.
            request = {k: v for k, v in request.items() if k != "body"}
            response = response[:200] if response else response
        return {
            "at": self.at, "outcome": self.outcome, "request": orjson.dumps(request).decode(),
            "status": self.status, "response": response, "error": self.error, "latency_ms": self.latency_ms,
        }


@dataclass
class Outcome:
    outcome: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with each secret of 4 characters or more replaced by REDACTED (shorter ones would
    mask ordinary text)."""
    for secret in secrets:
        if secret and len(str(secret)) >= 4:
            text = text.replace(str(secret), REDACTED)
    return text


def describe(request: OutgoingRequest, content: bytes | None = None) -> dict[str, Any]:
    """What we keep about a request: method, URL, headers and body, secrets replaced.
    (``content``: the request's bytes when the caller has them already.)"""
    headers = {}
    for name, value in request.headers.items():
        if name.lower() in ("authorization", "proxy-authorization"):
            scheme = str(value).split(" ", 1)[0]
            value = f"{scheme} {REDACTED}"
        headers[name] = redact(str(value), request.secrets)
    if content is None:
        content = request.content()
    body = None
    if content is not None:
        body = redact(content[:EXCERPT_CHARS * 2].decode("utf-8", "replace"), request.secrets)[:EXCERPT_CHARS]
    elif request.form is not None:
        body = redact(orjson.dumps(request.form).decode(), request.secrets)[:EXCERPT_CHARS]
    return {
        "method": request.method, "url": redact(request.url, request.secrets), "headers": headers,
        "body": body, "idempotency_key": request.idempotency_key,
    }


class Sender:
    """One sender for every translator, one 5 s timeout, pooled keep-alive connections.

    Requests go to ``transport.HTTP11Transport`` (keep-alive pools per vendor origin, parsed by
    httptools) rather than through ``httpx.AsyncClient`` and httpcore: we use none of the
    client's cookies, auth, redirects or event hooks, and httpcore's pure-Python HTTP costs about
    ten times the CPU per request (see that module). On our own transports a request with a
    body in bytes skips httpx's request and response objects (``_exchange``); a transport
    handed in (tests may hand in any httpx transport) and form bodies go through them.

    ``proxies`` replaces the environment (same shape as ``urllib.request.getproxies()``:
    ``{"https": url, "http": url, "all": url, "no": "host,.domain"}``); ``trust_env=False``
    ignores it. A transport handed in carries every request: no proxy is chosen for it.
    A proxy URL the transport cannot use (``socks5://``, ``https://``) is a ``ValueError`` here,
    at start-up, rather than a failed delivery per event.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        base_urls: dict[str, str] | None = None,
        max_connections: int = 256,
        proxies: dict[str, str] | None = None,
        trust_env: bool = True,
        allow_private_egress: bool = False,
        resolver: Resolver | None = None,
    ):
        self.timeout = timeout
        self.base_urls = dict(base_urls or {})
        self._own_transport = transport is None
        guard = None if allow_private_egress else EgressGuard(resolver)
        self._transport = transport or HTTP11Transport(max_connections=max_connections, guard=guard)
        self._timeout = {"timeout": httpx.Timeout(timeout).as_dict()}
        # Proxy routing: None (the hot path's only check) unless some proxy is configured.
        self._routes: dict | None = None  # origin -> transport
        self._proxy_for: dict[str, httpx.AsyncBaseTransport] = {}
        self._proxy_settings: dict[str, str] = {}
        self._urls: dict[str, httpx.URL] = {}  # parsed target URLs (a destination sends to few)
        if transport is None:
            settings = dict(proxies) if proxies is not None else getproxies_environment() if trust_env else {}
            by_url: dict[str, HTTP11Transport] = {}
            for scheme in ("http", "https"):
                url = (settings.get(scheme) or settings.get("all") or "").strip()
                if not url:
                    continue
                if "://" not in url:  # "proxy.corp:3128", as curl and requests accept it
                    url = "http://" + url
                if url not in by_url:
                    try:
                        by_url[url] = HTTP11Transport(max_connections=max_connections, proxy=url, guard=guard)
                    except ValueError as exc:  # name the variable, not its value (it may hold a password)
                        where = f"{scheme.upper()}_PROXY or ALL_PROXY"
                        raise ValueError(f"{scheme} proxy (from {where}): {exc}") from None
                self._proxy_for[scheme] = by_url[url]
            if self._proxy_for:
                self._proxy_settings = settings
                self._routes = {}

    async def aclose(self) -> None:
        if self._own_transport:  # a transport handed in is the caller's to close
            await self._transport.aclose()
        for transport in set(self._proxy_for.values()):
            await transport.aclose()

    def _route(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        """The transport for ``url``'s origin: its scheme's proxy unless NO_PROXY exempts the host."""
        routes = self._routes
        key = (url.raw_scheme, url.raw_host, url.port)
        transport = routes.get(key)
        if transport is None:
            transport = self._proxy_for.get(url.scheme)
            port = url.port or (443 if url.scheme == "https" else 80)
            # host:port with IPv6 unbracketed, so NO_PROXY entries match the host alone or host:port.
            if transport is None or proxy_bypass_environment(f"{url.raw_host.decode('ascii')}:{port}",
                                                             self._proxy_settings):
                transport = self._transport
            if len(routes) >= MAX_ROUTES:
                routes.clear()
            routes[key] = transport
        return transport

    def target(self, url: str) -> str:
        if not self.base_urls:
            return url
        parts = urlsplit(url)
        base = self.base_urls.get(parts.netloc)
        if base is None:
            return url
        new = urlsplit(base)
        return urlunsplit((new.scheme, new.netloc, parts.path, parts.query, parts.fragment))

    async def perform(self, requests: list[OutgoingRequest], clock=None, pool_until: float | None = None) -> Outcome:
        """Send ``requests`` in order (with follow-ups); stop at the first that does not succeed.

        ``pool_until`` (a ``time.monotonic()`` instant) replaces the timeout for a free connection
        to the origin: the delivery worker waits for one as long as its lease allows, because a
        send queued behind the origin's connection cap is our congestion, not the vendor's failure
        (with 5 s, a hundred destinations sharing one vendor host turned a third of their sends
        into "PoolTimeout" retries)."""
        outcome = Outcome(DELIVERED)
        queue = list(requests)
        follow_ups = 0
        while queue:
            request = queue.pop(0)
            attempt, parsed = await self._send(request, pool_until)
            if clock is not None:
                attempt.at = clock()
            outcome.attempts.append(attempt)
            if attempt.outcome != DELIVERED:
                outcome.outcome = attempt.outcome
                return outcome
            if request.then is not None:
                follow_ups += 1
                if follow_ups > MAX_FOLLOW_UPS:
                    raise RuntimeError("too many follow-up requests")
                queue[0:0] = request.then(attempt.status, parsed)
        return outcome

    async def _send(self, request: OutgoingRequest, pool_until: float | None = None) -> tuple[Attempt, Any]:
        content = request.content()
        record = describe(request, content)
        started = time.perf_counter()
        url = self.target(request.url)
        problem = first_problem(request.headers)
        if problem:  # saved before the header rules existed: no retry would help
            return Attempt(DEAD, record, error=f"refused: {problem}"), None
        try:
            if self._own_transport and content is not None:
                # Our transports, bytes to send: no httpx request or response objects (their
                # URL parsing, header normalising and stream reading cost more than the exchange).
                status, raw, body = await self._exchange(request, url, content, pool_until)
                response = None if _plain(raw) else await _decoded(status, raw, body)
            else:
                response = await self._exchange_httpx(request, url, content, pool_until)
        except EgressRefused as exc:
            return Attempt(DEAD, record, error=str(exc), latency_ms=_ms(started)), None
        except httpx.LocalProtocolError as exc:  # a request we cannot write: the same next time
            return Attempt(DEAD, record, error=f"refused: {exc}", latency_ms=_ms(started)), None
        except httpx.TimeoutException as exc:
            return Attempt(RETRY, record, error=f"timeout after {self.timeout:g}s ({type(exc).__name__})",
                           latency_ms=_ms(started)), None
        except httpx.HTTPError as exc:
            return Attempt(RETRY, record, error=redact(f"network error: {type(exc).__name__}: {exc}", request.secrets),
                           latency_ms=_ms(started)), None
        latency = _ms(started)
        if response is not None:
            status, body, text = response.status_code, response.content, response.text[:EXCERPT_CHARS]
            retry_after = response.headers.get("retry-after")
        else:
            # utf-8 (what httpx assumes without a charset); 4 bytes per character at most
            text = body[:EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]
            retry_after = next((v.decode("latin-1") for k, v in raw if k.lower() == b"retry-after"), None)
        # A vendor may echo a header or key back in its answer (an error page quoting the request).
        text = redact(text, request.secrets)
        if 200 <= status < 300:
            parsed = None
            if request.then is not None:
                try:
                    parsed = orjson.loads(body)
                except orjson.JSONDecodeError:
                    parsed = None
            return Attempt(DELIVERED, record, status=status, response=text, latency_ms=latency), parsed
        if is_retryable_status(status):
            return Attempt(RETRY, record, status=status, response=text, error=f"HTTP {status}", latency_ms=latency,
                           retry_after=retry_after_seconds(retry_after)), None
        return Attempt(DEAD, record, status=status, response=text, error=f"HTTP {status} (permanent)",
                       latency_ms=latency), None

    def _timeouts(self, pool_until: float | None) -> dict[str, Any]:
        """The sender's timeouts; a send that may wait for a connection only as long as its
        lease allows (``pool_until``, monotonic) gets that as its pool timeout."""
        timeouts = self._timeout["timeout"]
        if pool_until is None:
            return timeouts
        return {**timeouts, "pool": max(0.0, pool_until - time.monotonic())}

    async def _exchange(self, request: OutgoingRequest, url: str, content: bytes,
                        pool_until: float | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The request on our transport: (status, raw headers, raw body). Headers as httpx
        would send them: Host first (the transport adds it), our User-Agent unless the request
        names one, the request's headers, Content-Length."""
        target = self._urls.get(url)
        if target is None:
            target = httpx.URL(url)
            if len(self._urls) >= MAX_ROUTES:
                self._urls.clear()
            self._urls[url] = target
        headers: list[tuple[bytes, bytes]] = []
        own_agent = True
        for name, value in request.headers.items():
            if own_agent and name.lower() == "user-agent":
                own_agent = False
            headers.append((name.encode("ascii"), value.encode("ascii") if isinstance(value, str) else value))
        if own_agent:
            headers.insert(0, (b"User-Agent", b"Switchboard/1.0"))
        if content:
            headers.append((b"Content-Length", str(len(content)).encode()))
        transport = self._transport if self._routes is None else self._route(target)
        status, _, raw, body, _ = await transport.send(  # type: ignore[attr-defined]  # ours: see _send
            request.method.upper(), target, headers, content, self._timeouts(pool_until))
        return status, raw, body

    async def _exchange_httpx(self, request: OutgoingRequest, url: str, content: bytes | None,
                              pool_until: float | None = None) -> httpx.Response:
        """Through httpx's request and response objects: a transport handed in, or a form body."""
        headers = httpx.Headers({"User-Agent": "Switchboard/1.0"})
        headers.update(request.headers)
        outgoing = httpx.Request(request.method, url, headers=headers, content=content,
                                 data=request.form if content is None else None,
                                 extensions={"timeout": self._timeouts(pool_until)})
        transport = self._transport if self._routes is None else self._route(outgoing.url)
        response = await transport.handle_async_request(outgoing)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response


def _plain(headers: list[tuple[bytes, bytes]]) -> bool:
    """An answer we can read as it came: not content-encoded, utf-8 (or no charset)."""
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            return False
        if lower == b"content-type" and b"charset" in value.lower() and b"utf-8" not in value.lower():
            return False
    return True


async def _decoded(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> httpx.Response:
    """An answer that needs httpx's decoders (gzip, brotli, another charset)."""
    response = httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))
    await response.aread()
    return response


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)

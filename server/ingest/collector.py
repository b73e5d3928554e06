"""The Tracking API: Segment's event endpoints, validated, normalised, stored, then answered.

Routes (under ``/v1`` and, when it differs, under ``config.collector_prefix``):

- ``POST identify|track|page|screen|group|alias`` and the browser's ``i|t|p|s|g|a``: one event;
- ``POST batch|import`` and ``b``: ``{"batch": [...], "context"?, "integrations"?, "sentAt"?}``;
- ``POST m``: analytics-next's client metrics — counted, never stored as events;
- ``POST e``: the snippet's early send, expanded into one event (server/ingest/early.py) and then
  stored as ``p``/``t`` are;
- ``POST keep``: server-set cookies, the bundle's daily request to set the visitor's id cookies
  again (server/ingest/kept_cookies.py); never an event;
- ``OPTIONS`` on all of them: the CORS preflight.

A request goes: body within its size limit (gzip ok) → JSON object → write key (body
``writeKey`` or Basic auth user) → source (cached) → rate limit → every event checked (the
first broken rule is a 400, and nothing of the request is stored) → normalised → handed to the
group-commit writer → ``200 {"success": true}`` once the transaction holding it has committed.
In a batch, an item that breaks a rule, is over 32 KB or is nested too deep is the exception to
"the first broken rule is a 400": it alone is refused (recorded, counted) and the rest stored.
When the store can't keep up or can't write, the answer is a 503 with Retry-After
(server/ingest/writer.py bounds what may wait).
Every answer, errors included, carries CORS headers. See docs/collector.md.
"""

from __future__ import annotations

import base64
import gc
import logging
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Route

from server.api.client_address import client_address
from server.catalog import Catalog, load_catalog
from server.config import Config
from server.errors import ApiError
from server.ingest import client_metrics, cors, events_api, kept_cookies, rejected, stats
from server.ingest.asgi import Answer, Call, encode_headers, error_answer
from server.ingest.body import (
    BATCH_LIMIT, EVENT_LIMIT, METRICS_LIMIT, parse_deep_batch_off_loop, parse_json, parse_object, parse_object_off_loop,
    read_body,
)
from server.ingest.early import expand, write_key_of
from server.ingest.early_sources import EarlySources
from server.ingest.keys import WriteKeyCache
from server.ingest.off_loop import OffLoop
from server.ingest.normalise import BatchDefaults, iso, normalise
from server.ingest.ratelimit import RateLimiter
from server.ingest.depth import TooDeep
from server.ingest.validate import check_batch, check_event, invalid_item, oversize, refusal, too_deep_item
from server.ingest.writer import GroupCommitWriter, StoreBusy
from server.store import events, regulations
from server.store.failures import describe, is_unavailable

log = logging.getLogger("switchboard.collector")

SINGLE = {
    "identify": "identify", "i": "identify",
    "track": "track", "t": "track",
    "page": "page", "p": "page",
    "screen": "screen", "s": "screen",
    "group": "group", "g": "group",
    "alias": "alias", "a": "alias",
}
BATCH = ("batch", "import", "b")
SUCCESS = b'{"success":true}'
STORAGE_RETRY_AFTER = "5"
_heap_frozen = False


class Collector:
    """What the routes share in one app: the writer, the key cache, the rate limiter, the thread
    for large bodies."""

    def __init__(self, config: Config, engine, catalog: Catalog | None = None):
        self.config = config
        self.engine = engine
        self.keys = WriteKeyCache(engine)
        # The snippet's early sends (/e) only: the source's device-mode marks, read once per change.
        self.early = EarlySources(engine, catalog if catalog is not None else load_catalog())
        self.kept = kept_cookies.KeepSources(engine)  # /keep only: whether server-set cookies are on
        # Users under a suppress regulation: their events are acknowledged, never stored.
        self.suppressions = regulations.SuppressionList(engine)
        self.limiter = RateLimiter(config.rate_limit)
        self.off_loop = OffLoop()  # gunzip and parse of large bodies, away from the event loop
        self.writer = GroupCommitWriter(
            engine, dedupe_window=config.dedupe_window, max_pending_events=config.commit_queue_events,
            max_pending_bytes=config.commit_queue_mb * 1024 * 1024)

    def start(self) -> "Collector":
        self.keys.subscribe()
        self.early.subscribe()
        self.kept.subscribe()
        self.suppressions.start()
        self.writer.start()
        return self

    def stop(self) -> None:
        self.keys.close()
        self.early.close()
        self.kept.close()
        self.suppressions.stop()
        self.writer.stop()
        self.off_loop.close()


def _collector(app: Starlette) -> Collector:
    collector = getattr(app.state, "collector", None)
    if collector is None:  # an app used without its lifespan (some tests): start on first use
        collector = app.state.collector = Collector(app.state.config, app.state.engine,
                                                    getattr(app.state, "catalog", None)).start()
    return collector


def _endpoints(app: Starlette) -> list["TrackingEndpoint"]:
    return [route.app for route in app.routes if isinstance(getattr(route, "app", None), TrackingEndpoint)]  # type: ignore[attr-defined]


async def startup(app: Starlette) -> None:
    app.state.collector = Collector(app.state.config, app.state.engine, getattr(app.state, "catalog", None)).start()
    # /metrics (server/delivery/metrics.py) registers these: refused events, read from the database.
    app.state.metrics_collectors = [*getattr(app.state, "metrics_collectors", []),
                                    rejected.RejectedEventsCollector(app.state.engine)]
    for endpoint in _endpoints(app):
        endpoint.collector = app.state.collector
    # Every event parsed is a handful of dicts, so the cyclic GC runs often; each full pass
    # would walk the whole start-up heap (SQLAlchemy, templates, catalog) — about a tenth of a
    # busy collector's CPU. Freezing what exists now takes it out of those passes. Once per
    # process: frozen cycles are never collected, so a test session starting many apps must
    # not freeze each one's leftovers.
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


async def shutdown(app: Starlette) -> None:
    for endpoint in _endpoints(app):
        endpoint.collector = None
    collector = getattr(app.state, "collector", None)
    if collector is not None:
        app.state.collector = None
        await run_in_threadpool(collector.stop)


# ---------------------------------------------------------------- request → rows


def basic_auth_user(call: Call) -> str | None:
    """The user name of ``Authorization: Basic base64(writeKey:)``, or None."""
    scheme, _, value = call.header(b"authorization").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:
        # binascii.Error (not base64), UnicodeDecodeError (not UTF-8) and, for a value with a
        # byte over 0x7F (the header is read as latin-1), b64decode's own ValueError: all three
        # are "no key here", answered like a missing key.
        return None
    return decoded.partition(":")[0] or None


def client_ip(call: Call, trust_proxy: bool) -> str | None:
    # The rule sign-in throttling uses too (server/api/client_address.py): the rightmost entry.
    return client_address(call.client_host, call.header(b"x-forwarded-for"), trust_proxy)


def request_write_key(call: Call, in_body: Any) -> str:
    """The request's write key: the one in the body when it is a non-empty string, else the Basic
    auth user name (Segment's rule for every route, the early send's array included)."""
    key = in_body if type(in_body) is str and in_body else basic_auth_user(call)
    if not key:
        raise ApiError(401, "missing_write_key",
                       "Send the source's write key as writeKey in the body or as the Basic auth user name")
    return key


async def _source_id(collector: Collector, call: Call, body: dict[str, Any]) -> int:
    return await _source_id_of(collector, request_write_key(call, body.get("writeKey")))


async def _source_id_of(collector: Collector, write_key: str) -> int:
    hit, source = collector.keys.cached(write_key)
    if not hit:
        try:
            source = await collector.keys.lookup(write_key)
        except Exception as exc:  # the database is unreachable: a retryable answer, not a 500
            log.error("write key lookup failed: %s", exc)
            raise ApiError(503, "storage_unavailable", "The write key cannot be checked right now; retry shortly",
                           headers={"Retry-After": STORAGE_RETRY_AFTER}) from None
    if source is None:
        raise ApiError(401, "invalid_write_key", "No source has this write key (was it rotated?)")
    if not source.enabled:
        raise ApiError(403, "source_disabled", "This source is disabled; enable it to collect events again")
    if collector.limiter.rate:
        wait = collector.limiter.wait(write_key)
        if wait:
            raise ApiError(429, "rate_limited",
                           f"More than {collector.limiter.rate} requests a second with this write key; retry later",
                           headers=RateLimiter.headers(wait))
    return source.id


Refused = list[dict[str, Any]]


def _rows(call: Call, collector: Collector, source_id: int, body: dict[str, Any],
          route_type: str | None, body_size: int = 0, deep: set[int] | frozenset[int] = frozenset(),
          ) -> tuple[list[dict[str, Any]], Refused | None]:
    """The rows to store, and records of the batch items refused on their own (None: none);
    ``deep``: the indexes of batch items nested too deep (server/ingest/depth.py, deep_batch)."""
    received_at = datetime.now(timezone.utc)
    received_iso = iso(received_at)
    ip = client_ip(call, collector.config.trust_proxy)
    refused = None
    if route_type:
        check_event(body, None, route_type)
        items = [normalise(body, index=None, route_type=route_type, received_at=received_at,
                           received_iso=received_iso, ip=ip)]
    else:
        batch = check_batch(body.get("batch"))
        defaults = BatchDefaults(body)
        # A body within 32 KB cannot hold an item over 32 KB: skip measuring each one.
        if body_size > EVENT_LIMIT or deep:
            kept = []
            for index, item in enumerate(batch):
                if index in deep:
                    refused = refused or []
                    refused.append({**invalid_item(item, too_deep_item(index)), "source_id": source_id,
                                    "received_at": received_at})
                    continue
                size = oversize(item) if body_size > EVENT_LIMIT else 0
                if size:
                    refused = refused or []
                    refused.append({**refusal(item, index, size), "source_id": source_id, "received_at": received_at})
                else:
                    kept.append((index, item))
        else:
            kept = list(enumerate(batch))
        # An item that breaks a rule is refused on its own, like an oversize one: SDKs drop a
        # batch answered 400 whole, and Segment stores the batch's other events.
        items = []
        for index, item in kept:
            try:
                check_event(item, index)
                items.append(normalise(item, index=index, route_type=None, received_at=received_at,
                                       received_iso=received_iso, ip=ip, batch=defaults))
            except ApiError as exc:
                if exc.extra.get("index") != index:  # about the batch itself (none today): all of it
                    raise
                refused = refused or []
                refused.append({**invalid_item(item, exc), "source_id": source_id, "received_at": received_at})
    if collector.suppressions.pairs:  # one set lookup per event, and only while some user is suppressed
        suppressed = collector.suppressions.suppressed
        kept_items = [item for item in items if not suppressed(source_id, item.get("userId"))]
        if len(kept_items) != len(items):
            stats.suppressed.inc(len(items) - len(kept_items))
            collector.suppressions.count(source_id, len(items) - len(kept_items))
            items = kept_items
    return events.rows_for(source_id, received_at, items), refused


# ---------------------------------------------------------------- endpoints


Handler = Callable[[Call, Collector], Awaitable[Answer]]


class TrackingEndpoint:
    """Every Tracking API path and method: OPTIONS → preflight, POST → the path's handler; CORS
    on every answer.

    A plain ASGI app (see server/ingest/asgi.py for why), so Starlette passes every method. One
    route per prefix (``/v1/{call:tracking_call}``) instead of sixteen: the router tries each
    route's pattern in turn, and this path is the busiest one.
    """

    def __init__(self, handlers: dict[str, Handler]):
        self.handlers = handlers
        self.collector: Collector | None = None  # this app's, bound by startup()

    async def __call__(self, scope, receive, send) -> None:
        answer = await self.answer(Call(scope, receive))
        await answer(scope, receive, send)

    async def answer(self, call: Call) -> Answer:
        method = call.method
        if method == "OPTIONS":
            return cors.preflight(call)
        try:
            if method != "POST":
                raise ApiError(405, "method_not_allowed", f"{method} is not allowed here; send POST",
                               headers={"Allow": "POST, OPTIONS"})
            collector = self.collector or _collector(call.scope["app"])
            return await self.handlers[call.scope["path_params"]["call"]](call, collector)
        except ApiError as exc:
            stats.rejections_total.labels(code=exc.code).inc()
            return error_answer(exc.status, exc.code, exc.message,
                                [*encode_headers(exc.headers), *cors.cors_headers(call)], exc.extra)
        except Exception:  # never expected: storage failures are handled below, input errors above
            log.exception("unexpected error on %s %s", method, call.scope["path"])
            return error_answer(500, "internal_error", "Something went wrong on our side; it has been logged.",
                                cors.cors_headers(call))



class _CallConvertor(Convertor):
    """``{call:tracking_call}``: exactly the Tracking API's path names, nothing else."""

    regex = "|".join(sorted([*SINGLE, *BATCH, "m", "e", "keep"], key=len, reverse=True))

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tracking_call", _CallConvertor())


async def _store(call: Call, collector: Collector, prepared: tuple[list[dict[str, Any]], Refused | None],
                 size: int) -> Answer:
    rows, refused = prepared
    try:
        if rows or refused:
            # The writer counts stored and duplicate events, and records the refused ones.
            await collector.writer.append(rows, refused, size)
    except StoreBusy as exc:  # too much waiting already, or the store is failing: refused up front
        stats.rejections_total.labels(code="storage_busy").inc()
        return error_answer(503, "storage_busy", f"Events cannot be stored right now: {exc}",
                            [(b"retry-after", STORAGE_RETRY_AFTER.encode()), *cors.cors_headers(call)])
    except Exception as exc:
        if is_unavailable(exc):
            log.warning("events not stored (%s); answering 503 so the client retries", describe(exc))
        else:
            log.error("events not stored (%s); answering 503 so the client retries", exc)
        stats.rejections_total.labels(code="storage_unavailable").inc()
        return error_answer(503, "storage_unavailable", "Events could not be stored right now; retry shortly",
                            [(b"retry-after", STORAGE_RETRY_AFTER.encode()), *cors.cors_headers(call)])
    return Answer(200, SUCCESS, cors.cors_headers(call))  # stored or duplicate: both acknowledged


# The parsed body is dropped before the commit is awaited: only the rows (strings, bytes and
# numbers, which the cyclic GC does not track) wait for it. A batch's parsed events are over a
# thousand dicts and lists; kept alive across the commit, every request in flight would be
# walked by each garbage collection meanwhile, and promoted to older generations to be walked
# again — over a microsecond per event at 32 connections.


def _single(route_type: str) -> Handler:
    async def handle(call: Call, collector: Collector) -> Answer:
        data = await read_body(call, EVENT_LIMIT, "event_too_large", "event")
        body = parse_object(data)
        source_id = await _source_id(collector, call, body)
        prepared = _rows(call, collector, source_id, body, route_type)
        del body
        return await _store(call, collector, prepared, len(data))

    return handle


async def _batch(call: Call, collector: Collector) -> Answer:
    data = await read_body(call, BATCH_LIMIT, "batch_too_large", "batch", collector.off_loop)
    deep: set[int] = set()
    try:
        body = await parse_object_off_loop(data, collector.off_loop)
    except TooDeep:  # an item too deep is refused alone; anything else too deep, the whole body
        body, deep = await parse_deep_batch_off_loop(data, collector.off_loop)
    source_id = await _source_id(collector, call, body)
    size = len(data)
    prepared = _rows(call, collector, source_id, body, None, size, deep)
    del body, data
    return await _store(call, collector, prepared, size)


async def _early(call: Call, collector: Collector) -> Answer:
    data = await read_body(call, EVENT_LIMIT, "event_too_large", "event")
    compact = parse_json(data, "the snippet's early-send array")
    # The source's early-send facts are those of the key that authenticated the request (the
    # array's, or the Basic auth user's when the array's is empty), never of the array's alone.
    key = request_write_key(call, write_key_of(compact))
    source_id = await _source_id_of(collector, key)
    body = expand(compact, await collector.early.facts(key))
    return await _store(call, collector, _rows(call, collector, source_id, body, body["type"]), len(data))


async def _keep(call: Call, collector: Collector) -> Answer:
    data = await read_body(call, kept_cookies.BODY_LIMIT, "payload_too_large", "request")
    body = parse_object(data)
    key = request_write_key(call, body.get("writeKey"))
    await _source_id_of(collector, key)  # an unknown or disabled key, a rate limit: as for events
    if not await collector.kept.enabled(key):
        raise ApiError(403, "server_cookies_off", "This source does not have server-set cookies on "
                       "(its page in the web app, or PATCH /api/v1/sources/{id} {\"server_cookies\": true})")
    kept, cookies = kept_cookies.set_cookies(body, call.header(b"origin"), kept_cookies.host_of(call.header(b"host")),
                                             call.header(b"cookie"))
    return Answer(200, orjson.dumps({"kept": kept}), [*cookies, (b"cache-control", b"no-store"), *cors.cors_headers(call)])


async def _metrics(call: Call, collector: Collector) -> Answer:
    data = await read_body(call, METRICS_LIMIT, "batch_too_large", "metrics body", collector.off_loop)
    body = await parse_object_off_loop(data, collector.off_loop)
    client_metrics.record(body)
    return Answer(200, SUCCESS, cors.cors_headers(call))


def routes(config: Config) -> list[Route]:
    handlers: dict[str, Handler] = {name: _single(kind) for name, kind in SINGLE.items()}
    handlers.update({name: _batch for name in BATCH})
    handlers["m"] = _metrics
    handlers["e"] = _early
    handlers["keep"] = _keep
    endpoint = TrackingEndpoint(handlers)
    prefixes = list(dict.fromkeys(["/v1", config.collector_prefix]))
    found = []
    for prefix in prefixes:
        route = Route(f"{prefix}/{{call:tracking_call}}", endpoint,
                      name="collector" + ("" if prefix == "/v1" else "_prefixed"))
        # Exact paths the app may hand straight to the endpoint (server/app.py: SwitchboardApp).
        route.fast_paths = {f"{prefix}/{name}": {"call": name} for name in handlers}  # type: ignore[attr-defined]
        found.append(route)
    return found + events_api.routes() + rejected.routes()

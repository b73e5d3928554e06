"""Routes that browsers load: the bundle, its immutable variant, the analytics-next plugins, the
Segment settings document and the snippet.

    GET {bundle_path}/{writeKey}/analytics.min.js          max-age from config, ETag, 304
    GET {bundle_path}/{writeKey}/analytics.{hash}.min.js   same bytes, immutable for a year
    GET {bundle_path}/plugins/{slug}.{hash}.js             a loader as an analytics-next plugin
    GET /v1/projects/{writeKey}/settings                   Segment's settings document (CORS)
    GET /snippet/{writeKey}.js                             the official v5 snippet, pointed here

The warm path does no I/O and no threadpool hop: dict lookups, then bytes.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.cdn.bundle_cache import NOT_KNOWN, BundleCache, Entry, Missing
from server.cdn.bundles import Built, build_plugin, check_templates
from server.config import Config
from server.cdn.snippet import render_snippet

log = logging.getLogger("switchboard.cdn")
JS = "application/javascript; charset=utf-8"
IMMUTABLE = "public, max-age=31536000, immutable"
_HASHED = re.compile(r"analytics\.([0-9a-f]{16})\.min\.js")
_PLUGIN = re.compile(r"([a-z][a-z0-9_]*)\.([0-9a-f]{16})\.js")
_WHY = {
    "unknown": "no source has this write key",
    "disabled": "this source is disabled",
    "version": "this bundle version is no longer served; use analytics.min.js",
    "plugin": "no such plugin",
    "unavailable": "the settings store is unavailable; try again shortly",
}


# Accept-Encoding values browsers and CDNs actually send, answered without parsing. A fixed table
# of our own: nothing here is keyed on what a client sends (a cache of client header values is a
# memory leak that any client can fill).
_COMMON_ACCEPT = {
    "gzip, deflate, br, zstd": "br", "gzip, deflate, br": "br", "br, gzip, deflate": "br", "gzip, br": "br",
    "br": "br", "gzip, deflate": "gzip", "gzip,deflate": "gzip", "gzip": "gzip", "identity": "identity", "": "identity",
}


def negotiate(accept_encoding: str) -> str:
    """br > gzip > identity, honouring q=0."""
    common = _COMMON_ACCEPT.get(accept_encoding)
    if common is not None:
        return common
    offered: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        match = re.search(r"q=([0-9.]+)", params)
        if match:
            try:
                q = float(match.group(1))
            except ValueError:
                q = 0.0
        offered[name.strip()] = q
    for encoding in ("br", "gzip"):
        if offered.get(encoding, offered.get("*", 0.0)) > 0:
            return encoding
    return "identity"


def _matching_tag(if_none_match: str, built: Built) -> str | None:
    """Our ETag for this content that If-None-Match names, if any (``*`` matches too).

    Compared against the current ETags only (nothing is cached, so a client sending endless
    distinct values costs a scan of its own header and no memory). Weak comparison (RFC 9110
    §13.1.2; proxies that compress turn "x" into W/"x"), and any encoding of the same content
    counts: every one decodes to the same bytes, so the client's copy is current whichever it
    holds (this also keeps 304s when brotli is re-compressed at a higher quality). The answer is
    always one of our own strings: client text is never echoed into a response header.
    """
    tags = built.etags
    if if_none_match in tags:  # the usual case: the browser sends back exactly what it got
        return if_none_match
    if built.hash not in if_none_match and "*" not in if_none_match:
        return None
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*":
            return tag
        tag = tag.removeprefix("W/")
        if tag in tags:
            return tags[tags.index(tag)]
    return None


class _Prebuilt(Response):
    """A response whose raw headers were built once: the warm path skips header encoding."""

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes):
        self.status_code, self.raw_headers, self.body, self.background = status, raw_headers, body, None


@lru_cache(maxsize=4096)
def _raw_headers(etag: str, encoding: str, cache_control: str, content_type: str, length: int | None):
    headers = [
        (b"cache-control", cache_control.encode()),
        (b"etag", etag.encode("latin-1")),
        (b"vary", b"Accept-Encoding"),
        (b"access-control-allow-origin", b"*"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if length is not None:  # None: a 304, which carries no body and no length
        headers += [(b"content-type", content_type.encode()), (b"content-length", str(length).encode())]
        if encoding != "identity":
            headers.append((b"content-encoding", encoding.encode()))
    return headers


def serve(request: Request, built: Built, cache_control: str, content_type: str = JS) -> Response:
    headers = request.headers
    return respond(built, headers.get("accept-encoding", ""), headers.get("if-none-match"), cache_control, content_type)


def respond(built: Built, accept_encoding: str, inm: str | None, cache_control: str, content_type: str = JS) -> Response:
    encoding = negotiate(accept_encoding)
    matched = inm and _matching_tag(inm, built)
    if matched:
        etag = built.etag(encoding) if matched == "*" else matched
        return _Prebuilt(304, _raw_headers(etag, encoding, cache_control, content_type, None), b"")
    body = built.variant(encoding)
    return _Prebuilt(200, _raw_headers(built.etag(encoding), encoding, cache_control, content_type, len(body)), body)


def not_found(reason: str, status: int = 404) -> Response:
    # A short JS comment, so a broken <script> tag explains itself in the browser's network tab.
    body = f"/* Switchboard: {_WHY[reason]} */\n"
    headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
    if status == 503:
        headers["Retry-After"] = "5"
    return Response(body, status_code=status, media_type=JS, headers=headers)


async def _lookup(cache: BundleCache, write_key: str, *, json: bool = False) -> Entry | Missing | Response:
    """The cache's answer, or a 503 when the store cannot be read and nothing is cached."""
    try:
        return await cache.get(write_key)
    except Exception:
        log.exception("could not read the settings of a write key")
        if json:
            return Response(f'{{"code":"unavailable","message":"{_WHY["unavailable"]}"}}', status_code=503,
                            media_type="application/json",
                            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store", "Retry-After": "5"})
        return not_found("unavailable", 503)


@lru_cache(maxsize=8)
def bundle_cache_control(config: Config) -> str:
    return f"public, max-age={config.bundle_max_age}, stale-while-revalidate={config.bundle_stale_while_revalidate}"


def cache_of(state) -> BundleCache:
    cache = getattr(state, "bundle_cache", None)
    if cache is None:  # an app used without its lifespan (some tests): create on first use
        cache = state.bundle_cache = BundleCache(state.engine, state.catalog, state.config)
        cache.directory.start()  # its first check loads the directory; until then keys are read one by one
    return cache


def _cache(request: Request) -> BundleCache:
    return cache_of(request.app.state)


class BundleEndpoint:
    """``GET {bundle_path}/{writeKey}/analytics[.{hash}].min.js`` as a bare ASGI app: the hottest
    route builds no Request object and goes through no extra wrapper."""

    async def __call__(self, scope, receive, send) -> None:
        accept, inm = "", None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                accept = value.decode("latin-1")
            elif name == b"if-none-match":
                inm = value.decode("latin-1")
        state = scope["app"].state
        response = await self.answer(state, scope["path_params"], accept, inm)
        await response(scope, receive, send)

    @staticmethod
    async def answer(state, params: dict, accept: str, inm: str | None) -> Response:
        write_key, file = params["write_key"], params["file"]
        hashed = None
        if file != "analytics.min.js":
            match = _HASHED.fullmatch(file)
            if match is None:
                return not_found("unknown")
            hashed = match.group(1)
        cache = cache_of(state)
        entry = await _lookup(cache, write_key)
        if isinstance(entry, Response):
            return entry
        if isinstance(entry, Missing):
            return not_found(entry.reason)
        if hashed is None:
            return respond(entry.bundle, accept, inm, bundle_cache_control(state.config))
        if entry.bundle.hash != hashed:
            entry = await cache.pinned(write_key, entry.source_id, hashed)
            if entry is None:
                return not_found("version")
        return respond(entry.bundle, accept, inm, IMMUTABLE)


async def plugin(request: Request) -> Response:
    match = _PLUGIN.fullmatch(request.path_params["file"])
    built = build_plugin(match.group(1)) if match else None
    if built is None or built.hash != match.group(2):
        return not_found("plugin")
    return serve(request, built, IMMUTABLE)


async def settings(request: Request) -> Response:
    entry = await _lookup(_cache(request), request.path_params["write_key"], json=True)
    if isinstance(entry, Response):
        return entry
    cors = {"Access-Control-Allow-Origin": "*"}
    if isinstance(entry, Missing):
        # analytics-next prints this body with console.error when load() fails.
        return Response(f'{{"code":"not_found","message":"{_WHY[entry.reason]}"}}', status_code=404,
                        media_type="application/json", headers={**cors, "Cache-Control": "no-store"})
    cc = bundle_cache_control(request.app.state.config)
    return Response(entry.settings, media_type="application/json", headers={**cors, "Cache-Control": cc})


async def snippet(request: Request) -> Response:
    file = request.path_params["file"]
    if not file.endswith(".js"):
        return not_found("unknown")
    write_key = file[:-3]
    entry = await _lookup(_cache(request), write_key)
    if isinstance(entry, Response):
        return entry
    if isinstance(entry, Missing):
        return not_found(entry.reason)
    config: Config = request.app.state.config
    cache, version = _cache(request), entry.bundle.version
    early = cache.known_early(write_key, version)
    if early is NOT_KNOWN:
        early = await run_in_threadpool(cache.snippet_early, write_key, version)
    return Response(render_snippet(config, write_key, early), media_type=JS,
                    headers={"Cache-Control": f"public, max-age={config.bundle_max_age}",
                             "Access-Control-Allow-Origin": "*"})


def bundle_match(base: str):
    """``fast_match`` for the bundle route (server/app.py): the path params of a GET or HEAD of
    ``{base}/{write_key}/{file}``, else None (other methods get the router's 405; the plugins
    route keeps its own path)."""
    prefix = base + "/"
    skip = len(prefix)

    def match(scope) -> dict[str, str] | None:
        path = scope["path"]
        if not path.startswith(prefix) or scope["method"] not in ("GET", "HEAD"):
            return None
        write_key, slash, file = path[skip:].partition("/")
        if not slash or not write_key or not file or "/" in file or write_key == "plugins":
            return None
        return {"write_key": write_key, "file": file}

    return match


def routes(config: Config) -> list[Route]:
    base = config.bundle_path.rstrip("/")
    bundle = Route(f"{base}/{{write_key}}/{{file}}", BundleEndpoint(), methods=["GET", "HEAD"])
    bundle.fast_match = bundle_match(base)  # type: ignore[attr-defined]  # every page view asks for it: skip middleware and router
    return [
        Route(f"{base}/plugins/{{file}}", plugin, methods=["GET"]),
        bundle,
        Route("/v1/projects/{write_key}/settings", settings, methods=["GET"]),
        Route("/snippet/{file}", snippet, methods=["GET"]),
    ]


async def startup(app) -> None:
    check_templates(app.state.catalog)
    cache = app.state.bundle_cache = BundleCache(app.state.engine, app.state.catalog, app.state.config)
    await run_in_threadpool(cache.start)  # the source directory, then one freshness check per interval
    config = app.state.config
    if config.publish_dir:
        from server.cdn.publish import Publisher
        from server.cdn.publish_webhook import PublishWebhook

        webhook = PublishWebhook(config.publish_webhook, config.publish_webhook_secret) if config.publish_webhook else None
        publisher = app.state.publisher = Publisher(cache, config.publish_dir, command=config.publish_command,
                                                    webhook=webhook)
        await run_in_threadpool(publisher.start)  # everything once, then each change


async def shutdown(app) -> None:
    publisher = getattr(app.state, "publisher", None)
    if publisher is not None:
        await run_in_threadpool(publisher.close)
    cache = getattr(app.state, "bundle_cache", None)
    if cache is not None:
        cache.close()

"""Bundle benchmark: sizes, warm throughput against a bare Starlette route, 304s, cold builds.

    .venv/bin/python bench/bundle.py [--seconds 5] [--connections 50]

Prints side-by-side figures from one run on this machine:
1. sizes of the three core variants (js_templates/dist), every js_templates/destinations/*.js.j2
   loader (minified, gzip, brotli, and what each adds to a gzip'd bundle with the loader runtime),
   the extras chunk, and the served bundle of a source without destinations (target <= 6 KB gzip)
   and of one with GA4, beside @segment/analytics-next's standalone bundle from its npm package
   (e2e/node_modules, installed by `make node-deps`) when present;
2. warm bundle requests/s from `switchboard`'s app vs a bare Starlette route returning the same
   bytes and headers, both under uvicorn with the same settings, ``server.api.edge.uvicorn_options``
   included (target ratio ≥ 0.9), and that route on uvicorn's stock protocol, the same for
   304 answers, and nginx serving the same file as the ceiling when nginx is installed;
3. cold build of a source with 10 device-mode destinations (target ≤ 20 ms);
4. the warm comparison once more as in-process ASGI calls (no sockets, steadier on a busy machine);
5. many write keys (``--keys``, default 10,000 sources): one key vs round-robin over 1,000 keys vs
   random over all of them, req/s and server CPU per request side by side (targets: round-robin
   <= 2x one key's CPU per request), the server's RSS after serving every key (target <= 250 MB at
   the default SWITCHBOARD_BUNDLE_CACHE_MB), the cold pass that builds them all and the same pass
   after a restart (stored builds are read, not rebuilt).

    .venv/bin/python bench/bundle.py --only keys     # just part 5

6. static publish under real nginx (bench/static_publish.py): the documented nginx config over
   SWITCHBOARD_PUBLISH_DIR vs nginx serving the same bytes as a plain file (target >= 0.9x; req/s
   and the nginx worker's CPU per request, 2 x --rounds alternating runs), and every header that
   differs from the origin's.

    .venv/bin/python bench/bundle.py --only publish  # just part 6
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import brotli
import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from pgserver import free_port, wait_for_port  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402

from server.cdn.bundle_cache import BundleCache  # noqa: E402
from server.cdn.bundles import build_bundle, build_extras, core_source, loader_slugs, loader_source, minify, polish  # noqa: E402
from server.catalog import load_catalog  # noqa: E402
from server.config import Config  # noqa: E402
from server.store import open_store, workspace  # noqa: E402
from server.store.bundle_builds import bump_sequence  # noqa: E402

ANALYTICS_NEXT = ROOT / "e2e" / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd" / "standalone.js"
ROUNDS = 5  # alternating wrk runs per server in part 2 (--rounds)
PUBLISH_ROUNDS = 2  # part 6 runs twice as many: its ratio sits near its target, and its runs are short
CORE_TARGET = 6 * 1024  # issue 18: a source without destinations serves at most 6 KB gzip (budget test: 8 KB)
UVICORN = dict(host="127.0.0.1", log_level="warning", access_log=False)  # both servers, same settings


def sizes(js: str) -> tuple[int, int, int]:
    data = js.encode()
    return len(data), len(gzip.compress(data, 9)), len(brotli.compress(data, quality=11))


def served(source: dict) -> tuple[int, int]:
    """The gzip bytes a visitor downloads for ``source``: from a cold build (zlib -9), and polished
    (Zopfli: what published files carry, and the origin a moment after the version's first request)."""
    built = build_bundle(Config(public_url="https://analytics.example.com"), load_catalog(), source)
    return len(built.gzip), len(polish(built).gzip)


def print_sizes() -> None:
    print("== Sizes (bytes; gzip -9, brotli q11)")
    base = {"write_key": "Xb4kQz9LmN2pR7sT1vW3yA5cE8gJ0hK6", "settings_version": 3, "enabled": True,
            "library_name": None, "destinations": []}
    ga4 = dict(base, destinations=[{"id": 1, "slug": "google_analytics_4", "mode": "device", "enabled": True,
                                    "settings": {"measurement_id": "G-BENCH1234"}}])
    print(f"{'file':32} {'minified':>9} {'gzip':>7} {'brotli':>7} {'adds (gzip)':>12}")
    for label, device, filters in (("core", False, False), ("core + loader runtime", True, False),
                                   ("core + runtime + filters", True, True)):
        raw, gz, br = sizes(minify(core_source(device, filters)))
        print(f"{label:32} {raw:9} {gz:7} {br:7} {'':>12}   budget 8192 gzip")
    # Loaders come with the loader runtime: what each adds is measured against that core.
    core = minify(core_source(device=True))
    core_gz = sizes(core)[1]
    for slug in loader_slugs():
        js = minify(loader_source(slug))
        raw, gz, br = sizes(js)
        added = sizes(core + "\n" + js)[1] - core_gz
        print(f"{'  ' + slug:32} {raw:9} {gz:7} {br:7} {added:12}   budget 1024 added")
    extras = build_extras()
    print(f"{'extras chunk (lazy)':32} {extras.size:9} {len(extras.gzip):7} {len(extras.br):7}")
    (cold, plain), (cold_ga4, with_ga4) = served(base), served(ga4)
    print(f"{'served: no destinations':32} {'':9} {plain:7} {'':7}   target {CORE_TARGET}: served/target"
          f" {plain / CORE_TARGET:.2f} ({'met' if plain <= CORE_TARGET else 'not met'}; {cold} from a cold build)")
    print(f"{'served: with GA4':32} {'':9} {with_ga4:7} {'':7}   ({cold_ga4} from a cold build)")
    every = dict(base, destinations=[{"id": n, "slug": slug, "mode": "device", "enabled": True, "settings": {}}
                                     for n, slug in enumerate(loader_slugs(), 1)])
    everything = build_bundle(Config(public_url="https://analytics.example.com"), load_catalog(), every)
    all_br = sizes(gzip.decompress(everything.gzip).decode())[2]  # q11, as the other rows (builds use q5)
    print(f"{f'served: all {len(loader_slugs())} loaders':32} {everything.size:9} {len(everything.gzip):7} {all_br:7}")
    if ANALYTICS_NEXT.exists():
        raw, gz, br = sizes(ANALYTICS_NEXT.read_text())
        print(f"{'analytics-next standalone.js':32} {raw:9} {gz:7} {br:7}   (npm; ratio served/it gzip {plain / gz:.2f})")
        # What analytics-next loads before any vendor code once a device-mode destination is on.
        chunk = next(ANALYTICS_NEXT.parent.glob("ajs-destination.bundle.*.js"), None)
        if chunk is not None:
            both = gz + sizes(chunk.read_text())[1]
            print(f"{'  + ajs-destination chunk':32} {'':9} {both:7} {'':7}   (ratio all loaders/it gzip "
                  f"{len(everything.gzip) / both:.2f})")
    else:
        print("analytics-next standalone.js: not installed (make node-deps)")


def source_with(engine, name: str, count: int) -> dict:
    source = workspace.create_source(engine, name)
    slugs = loader_slugs()
    for i in range(count):
        slug = slugs[i % len(slugs)]
        workspace.add_destination(engine, source["id"], slug=slug, mode="device", enabled=True, settings={})
    return source


def bench_cold(engine, catalog, config) -> None:
    print("== Cold build, 10 device-mode destinations (target <= 20 ms)")
    source = source_with(engine, "Cold", 10)
    config_row = workspace.public_config(engine, source["write_key"])
    build_bundle(config, catalog, config_row)  # templates compiled once per process
    times = []
    for i in range(20):
        config_row = dict(config_row, settings_version=config_row["settings_version"] + i + 1)
        start = time.perf_counter()
        build_bundle(config, catalog, config_row)
        times.append((time.perf_counter() - start) * 1000)
    from server.store.bundle_builds import bundle_builds

    cache = BundleCache(engine, catalog, config)
    with_query, read_back = [], []
    for _ in range(10):
        with engine.begin() as conn:  # forget the kept build too: a real first build
            conn.execute(bundle_builds.delete())
        cache.invalidate(source["write_key"])
        cache._entries.clear()
        start = time.perf_counter()
        cache._load(source["write_key"])
        with_query.append((time.perf_counter() - start) * 1000)
        cache.flush()
        cache._entries.clear()  # evicted: the next miss reads the kept build
        start = time.perf_counter()
        cache._load(source["write_key"])
        read_back.append((time.perf_counter() - start) * 1000)
    cache.close()
    print(f"render+minify+gzip+brotli(q5): {Figure(times).spread('{:.1f}')} ms (median (min–max) of {len(times)})")
    print(f"store query + build (a first miss; saved after the answer): {Figure(with_query).spread('{:.1f}')} ms")
    print(f"read of the kept build (a miss after eviction or restart): {Figure(read_back).spread('{:.2f}')} ms")


BARE_APP = textwrap.dedent("""
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    body, etag, port = open(sys.argv[1], "rb").read(), sys.argv[2], int(sys.argv[3])
    headers = {"Cache-Control": "public, max-age=60, stale-while-revalidate=3600", "ETag": etag,
               "Vary": "Accept-Encoding", "Access-Control-Allow-Origin": "*", "X-Content-Type-Options": "nosniff",
               "Content-Encoding": "gzip"}
    async def bundle(request):
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/javascript; charset=utf-8")
    app = Starlette(routes=[Route("/bundle.js", bundle)])
    edge = {}
    if sys.argv[4:] != ["stock"]:  # the protocol and timeouts `switchboard serve` uses, as ours
        from server.config import Config
        from server.api.edge import uvicorn_options
        edge = uvicorn_options(Config())
    uvicorn.run(app, port=port, **%r, **edge)
""" % UVICORN)

OUR_APP = textwrap.dedent("""
    import sys, uvicorn
    from server.app import create_app
    from server.config import Config
    from server.api.edge import uvicorn_options
    config = Config.from_env()
    planes = sys.argv[1].split(",") if len(sys.argv) > 1 else None
    uvicorn.run(create_app(config, planes=planes), port=config.port, **%r, **uvicorn_options(config))
""" % UVICORN)


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> float:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("Requests/sec"))
    non2xx = [l for l in out.splitlines() if "Non-2xx" in l]
    if non2xx and "304" not in str(headers):
        raise SystemExit(f"{url}: {non2xx[0]}")
    return float(line.split()[1])


def start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})})
    wait_for_port(port, 30)
    return proc


def nginx_ceiling(directory: Path, file_gz: Path, seconds: int, connections: int) -> Figure | None:
    from nginx_support import find, start_nginx  # tests/, on the path above

    if find("nginx") is None:
        return None
    port = free_port()
    proc = start_nginx(directory, textwrap.dedent(f"""
          server {{ listen 127.0.0.1:{port};
            location = /bundle.js {{ alias {file_gz}; default_type application/javascript;
              add_header Content-Encoding gzip; add_header Vary Accept-Encoding;
              add_header Cache-Control "public, max-age=60"; }} }}"""))
    try:
        wait_for_port(port, 10)
        return Figure([wrk(f"http://127.0.0.1:{port}/bundle.js", seconds, connections, {"Accept-Encoding": "gzip"})
                       for _ in range(ROUNDS)])
    finally:
        proc.terminate()
        proc.wait(10)


def bench_throughput(db_url: str, engine, seconds: int, connections: int, directory: Path) -> None:
    print(f"== Warm throughput (wrk -t2 -c{connections} -d{seconds}s, Accept-Encoding: gzip; uvicorn {UVICORN}); "
          f"req/s median (min–max) of {ROUNDS} alternating runs, {load()}")
    if shutil.which("wrk") is None:
        print("wrk is not installed: skipped")
        return
    source = source_with(engine, "Warm", 2)
    env = {"SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_LOG_LEVEL": "WARNING", "SWITCHBOARD_DELIVERY_WORKERS": "false"}
    procs, urls = [], {}
    try:
        # The whole app (every plane's background work included) and the cdn plane alone.
        for label, planes in (("switchboard", []), ("cdn plane", ["server.cdn"])):
            port = free_port()
            procs.append(start([sys.executable, "-c", OUR_APP, *([",".join(planes)] if planes else [])], port,
                               {**env, "SWITCHBOARD_PORT": str(port)}))
            urls[label] = f"http://127.0.0.1:{port}/analytics.js/v1/{source['write_key']}/analytics.min.js"
        first = httpx.get(urls["switchboard"], headers={"Accept-Encoding": "gzip"})
        raw = httpx.get(urls["switchboard"], headers={"Accept-Encoding": "identity"}).content
        body_gz = directory / "bundle.js.gz"
        body_gz.write_bytes(gzip.compress(raw, 9, mtime=0))
        etag = first.headers["etag"]
        bare_port = free_port()
        procs.append(start([sys.executable, "-c", BARE_APP, str(body_gz), etag, str(bare_port)], bare_port))
        urls["bare Starlette"] = f"http://127.0.0.1:{bare_port}/bundle.js"
        stock_port = free_port()  # bare Starlette on uvicorn's stock protocol: what the edge checks cost
        procs.append(start([sys.executable, "-c", BARE_APP, str(body_gz), etag, str(stock_port), "stock"], stock_port))
        urls["stock"] = f"http://127.0.0.1:{stock_port}/bundle.js"
        for label, headers in (("200", {"Accept-Encoding": "gzip"}),
                               ("304", {"Accept-Encoding": "gzip", "If-None-Match": etag})):
            runs: dict[str, list[float]] = {name: [] for name in urls}
            for url in urls.values():
                wrk(url, 1, connections, headers)  # warm-up
            # Alternate short rounds and take medians: other load on the machine hits all alike.
            for _ in range(ROUNDS):
                for name, url in urls.items():
                    runs[name].append(wrk(url, seconds, connections, headers))
            figures = {name: Figure(r) for name, r in runs.items()}
            rps = {name: figure.median for name, figure in figures.items()}
            bare = rps["bare Starlette"]

            def paired(name: str, base: str = "bare Starlette") -> str:
                """The ratio run by run (each pair ran back to back), median (min–max)."""
                return Figure([a / b for a, b in zip(runs[name], runs[base])]).spread("{:.2f}")

            print(f"{label}: switchboard {figures['switchboard'].spread('{:,.0f}')} req/s "
                  f"(ratio {rps['switchboard'] / bare:.2f}; run by run {paired('switchboard')})   "
                  f"cdn plane alone {figures['cdn plane'].spread('{:,.0f}')} "
                  f"(ratio {rps['cdn plane'] / bare:.2f}; run by run {paired('cdn plane')})   "
                  f"bare Starlette {figures['bare Starlette'].spread('{:,.0f}')}   target ratio >= 0.9")
            print(f"     bare Starlette on uvicorn's stock protocol {figures['stock'].spread('{:,.0f}')} req/s "
                  f"(edge checks: bare / stock {bare / rps['stock']:.2f}; run by run {paired('bare Starlette', 'stock')})")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    ceiling = nginx_ceiling(directory, directory / "bundle.js.gz", seconds, connections)
    if ceiling is None:
        print("nginx: not installed")
    else:
        print(f"nginx serving the same file (ceiling): {ceiling.spread('{:,.0f}')} req/s ({ROUNDS} runs, {load()})")


def bench_in_process(db_url: str, engine) -> None:
    """The same comparison without sockets: µs per ASGI call, so machine noise matters less."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from server.app import create_app

    print(f"== In-process ASGI calls (no sockets; 5 x 3000 calls: best, and median (min–max) of the 5; {load()})")
    source = source_with(engine, "InProcess", 2)
    app = create_app(Config(database_url=db_url, delivery_workers=False), engine=engine)
    path = f"/analytics.js/v1/{source['write_key']}/analytics.min.js"

    async def measure(target, url: str, headers: list) -> float:
        scope = {"type": "http", "method": "GET", "path": url, "raw_path": url.encode(), "query_string": b"",
                 "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("b", 80),
                 "client": ("c", 1), "root_path": ""}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        for _ in range(300):
            await target(dict(scope), receive, send)
        figure = Figure([])
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(3000):
                await target(dict(scope), receive, send)
            figure.values.append((time.perf_counter() - start) / 3000 * 1e6)
        return figure

    async def run() -> None:
        async with app.router.lifespan_context(app):
            entry = await app.state.bundle_cache.get(source["write_key"])
            etag, body = entry.bundle.etag("gzip"), entry.bundle.gzip
            fixed = {"Cache-Control": "public, max-age=60, stale-while-revalidate=3600", "ETag": etag,
                     "Vary": "Accept-Encoding", "Access-Control-Allow-Origin": "*",
                     "X-Content-Type-Options": "nosniff", "Content-Encoding": "gzip"}

            async def bare_endpoint(request):
                if request.headers.get("if-none-match") == etag:
                    return Response(status_code=304, headers=fixed)
                return Response(body, headers=fixed, media_type="application/javascript; charset=utf-8")

            bare = Starlette(routes=[Route("/bundle.js", bare_endpoint)])
            for label, headers in (("200", [(b"accept-encoding", b"gzip")]),
                                   ("304", [(b"accept-encoding", b"gzip"), (b"if-none-match", etag.encode())])):
                ours = await measure(app, path, headers)
                theirs = await measure(bare, "/bundle.js", headers)
                best, their_best = min(ours.values), min(theirs.values)
                print(f"{label}: switchboard {best:6.1f} us/call (median {ours.spread('{:.1f}')})   "
                      f"bare Starlette {their_best:6.1f} us/call (median {theirs.spread('{:.1f}')})   "
                      f"ratio (bare/ours) of the bests {their_best / best:.2f}, of the medians "
                      f"{theirs.median / ours.median:.2f} (target >= 0.9)")

    asyncio.run(run())


# ---------------------------------------------------------------- many write keys


def bulk_sources(engine, count: int) -> list[str]:
    """``count`` sources with one device-mode destination each, inserted in one transaction (the
    admin API would take minutes of fsyncs for 10,000); announced with one sequence bump."""
    from server.store.schema import destinations, settings_versions, sources

    now = workspace.now()
    keys = [workspace.new_write_key() for _ in range(count)]
    with engine.begin() as conn:
        first = (conn.execute(select(func.max(sources.c.id))).scalar() or 0) + 1
        first_dest = (conn.execute(select(func.max(destinations.c.id))).scalar() or 0) + 1
        ids = range(first, first + count)
        conn.execute(sources.insert(), [dict(id=i, name=f"Site {i}", slug=f"site_{i}", write_key=k, enabled=True,
                                             settings_version=1, created_at=now, updated_at=now) for i, k in zip(ids, keys)])
        dests = [dict(id=first_dest + n, source_id=i, slug="meta_pixel", mode="device", enabled=True,
                      settings={"pixel_id": str(1_000_000_000 + i)}, created_at=now, updated_at=now)
                 for n, i in enumerate(ids)]
        conn.execute(destinations.insert(), dests)
        conn.execute(settings_versions.insert(), [dict(
            source_id=d["source_id"], version=1, created_at=now, actor="bench", summary="bulk",
            content={"source": {"name": f"Site {d['source_id']}", "enabled": True},
                     "destinations": [{"id": d["id"], "slug": "meta_pixel", "mode": "device", "enabled": True,
                                       "settings": d["settings"]}]}) for d in dests])
        bump_sequence(conn)
    return keys


def lua_script(path: Path, keys: list[str], pattern: str) -> Path:
    table = ",".join(f'"{k}"' for k in keys)
    pick = "keys[math.random(n)]" if pattern == "random" else "keys[(i % n) + 1]"
    path.write_text(textwrap.dedent(f"""
        local keys = {{{table}}}
        local n, i = #keys, 0
        function init(args) math.randomseed(os.time() + tonumber(tostring({{}}):sub(8), 16)) end
        function request()
          i = i + 1
          return wrk.format("GET", "/analytics.js/v1/" .. {pick} .. "/analytics.min.js",
                            {{["Accept-Encoding"] = "gzip"}})
        end
    """))
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    status = {l.split(":")[0]: l.split()[1] for l in Path(f"/proc/{pid}/status").read_text().splitlines()
              if l.startswith(("VmRSS:", "VmHWM:"))}
    return int(status["VmRSS"]) / 1024, int(status["VmHWM"]) / 1024


def wrk_run(url: str, seconds: int, connections: int, script: Path | None) -> tuple[float, int, str]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", "Accept-Encoding: gzip"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
    total = int(next(l for l in out.splitlines() if "requests in" in l).split()[0])
    bad = next((l.strip() for l in out.splitlines() if "Non-2xx" in l), "")
    return rps, total, bad


def visit_all(port: int, keys: list[str], connections: int = 8) -> float:
    """Each key once over ``connections`` keep-alive connections; returns seconds. A minimal
    HTTP/1.1 client: httpx would spend more CPU than the server on this shared machine."""
    import asyncio

    async def one_connection(queue: list[str]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                key = queue.pop()
                writer.write(f"GET /analytics.js/v1/{key}/analytics.min.js HTTP/1.1\r\nHost: b\r\n"
                             "Accept-Encoding: gzip\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"{key}: {head[:40]!r}")
                length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                                  if line.startswith(b"content-length")))
                await reader.readexactly(length)
        finally:
            writer.close()

    async def run() -> None:
        queue = list(reversed(keys))
        await asyncio.gather(*[one_connection(queue) for _ in range(connections)])

    start = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - start


def idle_cpu(proc: subprocess.Popen, seconds: float = 2.0) -> float:
    """The server's CPU seconds per second with no request (its background threads)."""
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    return (cpu_seconds(proc.pid) - before) / seconds


def timed_pass(proc: subprocess.Popen, port: int, keys: list[str], idle: float) -> tuple[float, float]:
    """(seconds, server CPU ms per key without the idle background) of one pass over ``keys``."""
    before = cpu_seconds(proc.pid)
    took = visit_all(port, keys)
    return took, max(0.0, cpu_seconds(proc.pid) - before - idle * took) / len(keys) * 1000


def bench_many_keys(db_url: str, engine, directory: Path, count: int, seconds: int, connections: int) -> None:
    print(f"== Many write keys ({count:,} sources; wrk -t2 -c{connections} -d{seconds}s per run, "
          f"default SWITCHBOARD_BUNDLE_CACHE_MB; {load()})")
    if shutil.which("wrk") is None:
        print("wrk is not installed: skipped")
        return
    keys = bulk_sources(engine, count)
    # One public URL for both servers: a bundle embeds the origin, and with none set it would
    # carry each server's random port, so the restarted server could not use the kept builds.
    env = {"SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_LOG_LEVEL": "WARNING", "SWITCHBOARD_DELIVERY_WORKERS": "false",
           "SWITCHBOARD_PUBLIC_URL": "https://analytics.bench.test"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start([sys.executable, "-c", OUR_APP], port, {**env, "SWITCHBOARD_PORT": str(port)})
    try:
        idle = idle_cpu(proc)
        print("The passes and RSS below are single measurements: a cold pass happens once per run.")
        print(f"RSS at start: {rss_mb(proc.pid)[0]:.0f} MB; idle server CPU {idle * 1000:.0f} ms/s "
              "(subtracted from the per-key figures of the passes below, which are slow on a busy machine)")
        took, cpu = timed_pass(proc, port, keys, idle)
        rss, peak = rss_mb(proc.pid)
        print(f"cold pass over {count:,} keys (each built and saved once): {took:.1f} s, server CPU {cpu:.2f} ms/key; "
              f"RSS {rss:.0f} MB (peak {peak:.0f})")
        sample = keys[: min(count, 3000)]
        took, cpu = timed_pass(proc, port, keys[-1000:], idle)
        print(f"warm pass over the last 1,000 of them (reference): {took:.1f} s, server CPU {cpu:.2f} ms/key")
        patterns = {
            "one key": (f"{base}/analytics.js/v1/{keys[0]}/analytics.min.js", None),
            "round-robin 1,000": (base + "/", lua_script(directory / "rr.lua", keys[:1000], "rr")),
            f"random {count:,}": (base + "/", lua_script(directory / "random.lua", keys, "random")),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in patterns}
        for url, script in patterns.values():
            wrk_run(url, 1, connections, script)  # warm-up (round-robin keys evicted by the pass come back)
        for _ in range(round_count(min(ROUNDS, 3))):  # alternate: other load on the machine hits every pattern alike
            for name, (url, script) in patterns.items():
                before = cpu_seconds(proc.pid)
                rps, total, bad = wrk_run(url, seconds, connections, script)
                if bad:
                    raise SystemExit(f"{name}: {bad}")
                results[name].append((rps, (cpu_seconds(proc.pid) - before) / total * 1e6))
        one_cpu = statistics.median(c for _, c in results["one key"])
        print(f"median (min–max) of {len(results['one key'])} alternating runs, {load()}")
        print(f"{'pattern':20} {'req/s':>24} {'server CPU/request, µs':>24} {'vs one key':>11}")
        for name, runs in results.items():
            rps, cpu = Figure([r for r, _ in runs]), Figure([c for _, c in runs])
            print(f"{name:20} {rps.spread('{:,.0f}'):>24} {cpu.spread('{:,.0f}'):>24} {cpu.median / one_cpu:10.2f}x")
        print("target: round-robin 1,000 <= 2.00x one key's CPU per request (of the medians)")
        rss, peak = rss_mb(proc.pid)
        print(f"RSS after serving {count:,} keys: {rss:.0f} MB (peak {peak:.0f}; target <= 250 MB)")
    finally:
        proc.terminate()
        proc.wait(10)
    # A restart: every build is in the store, so the same pass reads instead of rendering.
    port = free_port()
    proc = start([sys.executable, "-c", OUR_APP], port, {**env, "SWITCHBOARD_PORT": str(port)})
    try:
        took, cpu = timed_pass(proc, port, sample, idle_cpu(proc))
        print(f"after a restart, {len(sample):,} keys (stored builds read back, not rendered): {took:.1f} s, "
              f"server CPU {cpu:.2f} ms/key")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    global ROUNDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="per wrk run (default 2)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"alternating wrk runs per server for warm throughput (default {ROUNDS}, at least 3)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--keys", type=int, default=10_000, help="sources for the many-keys part (0: skip it)")
    parser.add_argument("--only", choices=["keys", "publish"], help="run only that part")
    args = parser.parse_args()
    ROUNDS = round_count(args.rounds)
    header(f"bench/bundle.py{' --only ' + args.only if args.only else ''}: bundle sizes and speed")
    if args.only == "publish":
        from static_publish import bench_publish  # bench/, beside this script

        bench_publish(args.seconds, args.connections, PUBLISH_ROUNDS * ROUNDS)
        return
    if not args.only:
        print_sizes()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        db_url = f"sqlite:///{directory / 'bench.db'}"
        engine = open_store(db_url)
        catalog, config = load_catalog(), Config(database_url=db_url)
        if not args.only:
            bench_cold(engine, catalog, config)
            bench_in_process(db_url, engine)
            bench_throughput(db_url, engine, args.seconds, args.connections, directory)
        if args.keys:
            bench_many_keys(db_url, engine, directory, args.keys, args.seconds, args.connections)
        engine.dispose()
    if not args.only:
        from static_publish import bench_publish

        bench_publish(args.seconds, args.connections, PUBLISH_ROUNDS * ROUNDS)


if __name__ == "__main__":
    main()

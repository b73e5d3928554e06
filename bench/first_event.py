"""Time to the first event: our snippet vs Segment's official snippet + analytics-next.

    .venv/bin/python bench/first_event.py [--runs 5] [--delay-ms 100]

Drives Chromium (Debian's /usr/bin/chromium when present, as e2e/conftest.py) through Playwright's
async API. Every request of the page (the HTML, the bundle, analytics-next's settings and chunks,
the collector's POSTs) is held ``--delay-ms`` in a route handler before it goes on, and the
handlers run in parallel, as a network with that round-trip time would.

- ours: the page pastes the source's snippet (``GET /snippet/{writeKey}.js`` of a real
  ``switchboard serve``), which sends the page call itself at once (docs/bundle.md, "First event").
- analytics-next: the page pastes the official ``@segment/snippet`` (npm), its bundle URL routed to
  ``@segment/analytics-next``'s ``dist/umd/standalone.js``, its settings to our server's settings
  document, its events to the same collector.

Prints, for each, which request (in the order the page made them; #1 is the HTML) carries the first
event, and the time from navigation until that request reaches the collector (median of the runs), then the
ratio ours/analytics-next. Target: request #2 and <= 0.5x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from pgserver import free_port, wait_for_port  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402

from server.store import open_store, workspace  # noqa: E402

E2E = ROOT / "e2e"
NEXT_DIST = E2E / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
SITE = "http://shop.localhost"
CDN = "https://cdn.segment.com"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def official_snippet(write_key: str) -> str:
    js = ("process.stdout.write(require('@segment/snippet').max("
          "{apiKey: '__KEY__', host: 'cdn.segment.com'}))")
    out = subprocess.run(["node", "-e", js], cwd=E2E, check=True, capture_output=True, text=True, timeout=60).stdout
    return out.replace("__KEY__", write_key)


def page_html(snippet: str) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Landing</title><script>{snippet}</script>'
            f"</head><body>landing</body></html>")


def is_event(request) -> bool:
    if request.method != "POST":
        return False
    try:
        body = json.loads(request.post_data or "{}")
    except ValueError:
        return False
    if isinstance(body, list):  # our snippet's compact early send to the collector's /e (docs/collector.md)
        return request.url.endswith("/e") and body[1:2] in (["page"], ["track"])
    return any(e.get("type") for e in (body.get("batch") or [body]))


async def one_run(browser, lib: str, html: str, server: str, delay: float) -> tuple[int, float]:
    """(request number of the first event, ms from navigation to its answer)."""
    context = await browser.new_context()
    await context.grant_permissions(["local-network-access"])
    standalone = (NEXT_DIST / "standalone.js").read_bytes()
    client = httpx.AsyncClient(timeout=10)
    requests: list = []
    done: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handle(route):
        request = route.request
        await asyncio.sleep(delay)                     # every request, in parallel
        url = request.url
        if url.startswith(SITE):
            return await route.fulfill(status=200, body=html, headers={"Content-Type": "text/html"})
        if url.startswith(CDN):
            path = url.removeprefix(CDN).split("?")[0]
            if path.endswith("/analytics.min.js"):
                return await route.fulfill(status=200, body=standalone, headers={"Content-Type": "application/javascript"})
            if path.startswith("/analytics-next/bundles/"):
                file = NEXT_DIST / path.rsplit("/", 1)[1]
                if file.is_file():
                    return await route.fulfill(status=200, body=file.read_bytes(),
                                               headers={"Content-Type": "application/javascript"})
                return await route.abort()
            answer = await client.get(server + path)   # the settings document
            return await route.fulfill(status=answer.status_code, body=answer.content, headers={
                "Content-Type": answer.headers.get("content-type", "application/json"), "Access-Control-Allow-Origin": "*"})
        if url.startswith(server):
            if is_event(request) and not done.done():
                # The event reaches the collector now: its number in the page's requests, the time.
                done.set_result((requests.index(request) + 1 if request in requests else -1, time.perf_counter()))
            return await route.continue_()
        return await route.abort()

    await context.route("**/*", handle)
    page = await context.new_page()
    page.on("request", lambda r: requests.append(r))

    started = time.perf_counter()
    await page.goto(f"{SITE}/landing.html", wait_until="commit")
    number, at = await asyncio.wait_for(done, 20)
    await context.close()
    await client.aclose()
    return number, (at - started) * 1000


async def bench(runs: int, delay: float) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'first.db'}"
        engine = open_store(db_url)
        ours = workspace.create_source(engine, "ours")
        theirs = workspace.create_source(engine, "analytics-next")
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_HOST": "127.0.0.1",
               "SWITCHBOARD_PORT": str(port), "SWITCHBOARD_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=env, cwd=ROOT)
        try:
            wait_for_port(port, 30)
            pages = {
                "ours": page_html(httpx.get(f"{server}/snippet/{ours['write_key']}.js").text),
                "analytics-next": page_html(official_snippet(theirs["write_key"])),
            }
            async with async_playwright() as p:
                kwargs = {"args": FLAGS, **({"executable_path": CHROMIUM} if os.path.exists(CHROMIUM) else {})}
                browser = await p.chromium.launch(**kwargs)
                results: dict[str, list[tuple[int, float]]] = {k: [] for k in pages}
                for lib, html in pages.items():          # warm-up (browser start, first builds): not counted
                    await one_run(browser, lib, html, server, delay)
                for _ in range(runs):                   # alternate, so both see the same machine load
                    for lib, html in pages.items():
                        results[lib].append(await one_run(browser, lib, html, server, delay))
                await browser.close()
        finally:
            proc.terminate()
            proc.wait(15)
            engine.dispose()

    print(f"== First event, every request delayed {delay * 1000:.0f} ms (in parallel), median of {runs} runs "
          f"(min–max), {load()}")
    medians = {}
    for lib, values in results.items():
        numbers = sorted({n for n, _ in values})
        figure = Figure([ms for _, ms in values], [load()])
        medians[lib] = figure.median
        print(f"{lib:16} first event is request #{'/#'.join(map(str, numbers)):6} time {figure.spread('{:.0f}')} ms"
              f"   (runs: {', '.join(f'{ms:.0f}' for _, ms in values)})")
    paired = Figure([o[1] / a[1] for o, a in zip(results["ours"], results["analytics-next"])], [load()])
    ratio = medians["ours"] / medians["analytics-next"]
    print(f"ratio ours/analytics-next: {ratio:.2f} of the medians, {paired.spread('{:.2f}')} run by run   "
          f"(target: request #2 and <= 0.50)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of each page (default 5, at least 3)")
    parser.add_argument("--delay-ms", type=float, default=100)
    args = parser.parse_args()
    header(f"bench/first_event.py: first event, our snippet vs analytics-next, {args.delay_ms:g} ms per request")
    asyncio.run(bench(round_count(args.runs), args.delay_ms / 1000))


if __name__ == "__main__":
    main()

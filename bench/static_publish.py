"""Static publish under real nginx: the published bundle vs a plain file, and headers vs the origin.

    .venv/bin/python bench/static_publish.py [--seconds 2] [--connections 50]
    (also `bench/bundle.py --only publish`)

1. Starts `switchboard serve` with SWITCHBOARD_PUBLISH_DIR, waits for the published files.
2. Starts one nginx (worker_processes 1) with two servers: the config of docs/deployment.md
   ("nginx serving the published files", read from the page, so the documented config is what
   is measured) over that directory, and a plain `location` serving the same gzip file with
   fixed headers and the same open_file_cache (the anchor). wrk alternates between them; target: published ≥ 0.9× plain.
3. Compares, for the bundle, the hashed bundle, the settings document and the snippet in every
   encoding, nginx's response headers and decoded body with the origin's, and prints each
   difference (ETag values are nginx's own; checked to give a 304).

nginx and wrk come from apt (`apt-get install -y nginx wrk`); the script installs them when apt is
there and they are missing (never at import).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import brotli
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from pgserver import free_port, wait_for_port  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402

from server.store import open_store, workspace  # noqa: E402

ROUNDS = 6
IGNORED = {"date", "server", "connection", "keep-alive", "last-modified", "accept-ranges", "content-length", "etag"}


def preflight() -> bool:
    """nginx and wrk, from apt when missing and apt is there."""
    missing = [p for p, cmd in (("nginx", "nginx"), ("wrk", "wrk")) if not find(cmd)]
    if missing and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return bool(find("nginx") and find("wrk"))


def find(cmd: str) -> str | None:
    return shutil.which(cmd) or (f"/usr/sbin/{cmd}" if Path(f"/usr/sbin/{cmd}").exists() else None)


def documented_config(www: Path, port: int, origin_port: int) -> str:
    page = (ROOT / "docs" / "deployment.md").read_text()
    section = page[page.index("### nginx serving the published files"):]
    block = section[section.index("```nginx\n") + 9:]
    block = block[:block.index("```")]
    block = block.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("/var/lib/switchboard/www", str(www))
    block = block.replace("127.0.0.1:8000", f"127.0.0.1:{origin_port}")
    return block


def wrk(url: str, seconds: int, connections: int, encoding: str) -> float:
    out = subprocess.run([find("wrk"), "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Accept-Encoding: {encoding}",
                          url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: non-2xx answers\n{out}")
    return float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1])


def decode(response: httpx.Response) -> bytes:
    raw = response.content  # httpx is asked not to decode (see fetch)
    encoding = response.headers.get("content-encoding")
    return gzip.decompress(raw) if encoding == "gzip" else brotli.decompress(raw) if encoding == "br" else raw


def fetch(client: httpx.Client, url: str, encoding: str) -> httpx.Response:
    with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as response:
        response._content = b"".join(response.iter_raw())
    return response


def compare_headers(origin: str, nginx: str, key: str, digest: str) -> int:
    differences = 0
    paths = [f"/analytics.js/v1/{key}/analytics.min.js", f"/analytics.js/v1/{key}/analytics.{digest}.min.js",
             f"/v1/projects/{key}/settings", f"/snippet/{key}.js"]
    with httpx.Client() as client:
        for path in paths:
            for encoding in ("identity", "gzip", "br"):
                ours, theirs = fetch(client, origin + path, encoding), fetch(client, nginx + path, encoding)
                if decode(ours) != decode(theirs):
                    print(f"  BODY differs: {path} ({encoding})")
                    differences += 1
                a = {k: v for k, v in ours.headers.items() if k not in IGNORED}
                b = {k: v for k, v in theirs.headers.items() if k not in IGNORED}
                for name in sorted(a.keys() | b.keys()):
                    if a.get(name) != b.get(name):
                        print(f"  {path.replace(key, '{key}').replace(digest, '{hash}')} ({encoding}): "
                              f"{name}: origin {a.get(name)!r}, nginx {b.get(name)!r}")
                        differences += 1
                tag = theirs.headers.get("etag")
                again = client.get(nginx + path, headers={"Accept-Encoding": encoding, "If-None-Match": tag or ""})
                if again.status_code != 304:
                    print(f"  {path} ({encoding}): nginx answered {again.status_code} to its own ETag")
                    differences += 1
        unknown = client.get(nginx + "/analytics.js/v1/no-such-key/analytics.min.js")
        print(f"  unknown key through nginx: {unknown.status_code} from the origin "
              f"({unknown.content.decode().strip()})")
    return differences


def bench_publish(seconds: int, connections: int, rounds: int = ROUNDS) -> None:
    rounds = round_count(rounds)
    print(f"== Static publish under nginx (wrk -t2 -c{connections} -d{seconds}s, req/s median (min–max) of {rounds} "
          f"alternating runs, {load()})")
    if not preflight():
        print("nginx or wrk is not installed (and apt is not there): skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory, www = Path(tmp), Path(tmp) / "www"
        url = f"sqlite:///{directory / 'bench.db'}"
        engine = open_store(url)
        source = workspace.create_source(engine, "Published")
        workspace.add_destination(engine, source["id"], slug="google_analytics_4", mode="device", enabled=True,
                                  settings={"measurement_id": "G-BENCH1"})
        key = source["write_key"]
        origin_port, nginx_port, plain_port = free_port(), free_port(), free_port()
        env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_PORT": str(origin_port),
               "SWITCHBOARD_PUBLISH_DIR": str(www), "SWITCHBOARD_LOG_LEVEL": "WARNING",
               "SWITCHBOARD_DELIVERY_WORKERS": "false"}
        server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=env, cwd=ROOT)
        nginx = None
        try:
            wait_for_port(origin_port, 30)
            bundle = www / "analytics.js/v1" / key / "analytics.min.js"
            deadline = time.monotonic() + 10
            while not bundle.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            digest = httpx.get(f"http://127.0.0.1:{origin_port}/analytics.js/v1/{key}/analytics.min.js").headers["etag"]
            digest = digest.strip('"').split("-")[0]
            plain = {enc: directory / f"plain.js.{enc}" for enc in ("gzip", "br")}
            shutil.copy(bundle.with_name("analytics.min.js.gz"), plain["gzip"])
            shutil.copy(bundle.with_name("analytics.min.js.br"), plain["br"])
            conf = directory / "nginx.conf"
            conf.write_text(textwrap.dedent(f"""\
                worker_processes 1; daemon off; pid {directory}/nginx.pid; error_log {directory}/error.log; pcre_jit on;
                events {{ worker_connections 1024; }}
                http {{
                  access_log off; sendfile on; tcp_nopush on;
                  client_body_temp_path {directory}; proxy_temp_path {directory};
                  fastcgi_temp_path {directory}; uwsgi_temp_path {directory}; scgi_temp_path {directory};
                  server {{ listen 127.0.0.1:{plain_port};   # the anchor, with the same file cache as ours
                    open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;
                    location = /bundle.gzip.js {{ alias {plain["gzip"]}; default_type application/javascript;
                      add_header Content-Encoding gzip; add_header Vary Accept-Encoding;
                      add_header Cache-Control "public, max-age=60"; }}
                    location = /bundle.br.js {{ alias {plain["br"]}; default_type application/javascript;
                      add_header Content-Encoding br; add_header Vary Accept-Encoding;
                      add_header Cache-Control "public, max-age=60"; }} }}
                """) + documented_config(www, nginx_port, origin_port) + "}\n")
            nginx = subprocess.Popen([find("nginx"), "-c", str(conf), "-p", str(directory)])
            wait_for_port(nginx_port, 10)
            wait_for_port(plain_port, 10)
            for encoding in ("gzip", "br"):
                urls = {"published": f"http://127.0.0.1:{nginx_port}/analytics.js/v1/{key}/analytics.min.js",
                        "plain": f"http://127.0.0.1:{plain_port}/bundle.{encoding}.js"}
                runs: dict[str, list[float]] = {name: [] for name in urls}
                for link in urls.values():
                    wrk(link, 1, connections, encoding)  # warm-up
                for i in range(rounds):  # alternate, and alternate who goes first: the machine's other load hits both
                    for name in (("published", "plain") if i % 2 else ("plain", "published")):
                        runs[name].append(wrk(urls[name], seconds, connections, encoding))
                rps = {name: Figure(r) for name, r in runs.items()}
                paired = Figure([a / b for a, b in zip(runs["published"], runs["plain"])]).spread("{:.2f}")
                print(f"Accept-Encoding {encoding}: published (docs config) {rps['published'].spread('{:,.0f}')} req/s   "
                      f"plain file, same bytes {rps['plain'].spread('{:,.0f}')} req/s   "
                      f"ratio {rps['published'].median / rps['plain'].median:.2f}, run by run {paired} (target >= 0.9)")
            print("Headers and bodies, nginx vs the origin (4 files x identity/gzip/br; ignoring "
                  f"{', '.join(sorted(IGNORED - {'etag'}))}):")
            count = compare_headers(f"http://127.0.0.1:{origin_port}", f"http://127.0.0.1:{nginx_port}", key, digest)
            print(f"  {count} difference(s)" + ("" if count else ": identical"))
        finally:
            for proc in (nginx, server):
                if proc is not None:
                    proc.terminate()
                    proc.wait(15)
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"alternating runs (default {ROUNDS}, at least 3)")
    args = parser.parse_args()
    header("bench/static_publish.py: the published bundle under nginx vs a plain file")
    bench_publish(args.seconds, args.connections, args.rounds)


if __name__ == "__main__":
    main()

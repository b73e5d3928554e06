"""Static publish under real nginx: the published bundle vs a plain file, and headers vs the origin.

    .venv/bin/python bench/static_publish.py [--seconds 2] [--connections 50] [--rounds 10]
    (also `bench/bundle.py --only publish`)

1. Starts `switchboard serve` with SWITCHBOARD_PUBLISH_DIR, waits for the published files.
2. Starts one nginx (worker_processes 1) with two servers: the config of docs/deployment.md
   ("nginx serving the published files", read from the page by tests/nginx_support.py, so the
   documented config is what is measured) over that directory, and a plain `location` serving the
   same precompressed file with fixed headers and the same open_file_cache (the anchor). wrk
   alternates between them, for the Accept-Encoding values of ENCODINGS; each run gives req/s and
   the nginx worker's CPU time per request (from /proc), which the other load on the machine
   moves less than req/s. Target: published >= 0.9x plain.
3. Compares, for the bundle, the hashed bundle, the settings document and the snippet in every
   encoding, nginx's response headers and decoded body with the origin's, and prints each
   difference (ETag values are nginx's own; checked to give a 304). tests/test_publish_nginx.py
   checks the same in `make test`.

nginx and wrk come from apt (`apt-get install -y nginx wrk`); the script installs them when apt is
there and they are missing (never at import).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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

from nginx_support import IGNORED, differences, documented_config, find, published_hash, published_paths, start_nginx  # noqa: E402
from pgserver import free_port, wait_for_port  # noqa: E402
from rounds import Figure, count as round_count, header, load  # noqa: E402

from server.store import open_store, workspace  # noqa: E402

ROUNDS = 10
# Accept-Encoding values wrk sends: the two encodings alone, what Chromium and Firefox send (an
# exact entry of the config's map), and a value with q-values (the map's regular expression).
ENCODINGS = {"gzip": "gzip", "br": "br", "gzip, deflate, br, zstd": "br", "br;q=1.0, gzip;q=0.8": "br"}
# What the header comparison asks with (tests/test_publish_nginx.py asks with more).
COMPARED = ["identity", "gzip", "br", "gzip, deflate, br, zstd", "br;q=0, gzip", "br;q=1.0, gzip;q=0.8"]


def preflight() -> bool:
    """nginx and wrk, from apt when missing and apt is there."""
    missing = [p for p, cmd in (("nginx", "nginx"), ("wrk", "wrk")) if not find(cmd)]
    if missing and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", *missing],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return bool(find("nginx") and find("wrk"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_of(master: int) -> int:
    """The pid of nginx's one worker process (the master's child)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == master:
                return int(entry.name)
    raise RuntimeError("nginx has no worker process")


def wrk(url: str, seconds: int, connections: int, encoding: str, worker: int) -> tuple[float, float]:
    """req/s, and µs of the nginx worker's CPU per request, over one wrk run."""
    before = cpu_seconds(worker)
    out = subprocess.run([find("wrk"), "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Accept-Encoding: {encoding}",
                          url], capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(worker) - before
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: non-2xx answers\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1])
    return rps, used / max(requests, 1) * 1e6


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
            while published_hash(www, key) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            digest = published_hash(www, key)
            if digest is None:
                raise SystemExit(f"the server published nothing into {www} within 10 s")
            plain = {enc: directory / f"plain.js.{enc}" for enc in ("gzip", "br")}
            shutil.copy(bundle.with_name("analytics.min.js.gz"), plain["gzip"])
            shutil.copy(bundle.with_name("analytics.min.js.br"), plain["br"])
            anchor = "".join(f"""
                location = /bundle.{enc}.js {{ alias {plain[enc]}; default_type application/javascript;
                  add_header Content-Encoding {enc}; add_header Vary Accept-Encoding;
                  add_header Cache-Control "public, max-age=60"; }}""" for enc in plain)
            nginx = start_nginx(directory, f"""
              server {{ listen 127.0.0.1:{plain_port};   # the anchor, with the same file cache as ours
                open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;{anchor} }}
            """ + documented_config(www, nginx_port, origin_port))
            wait_for_port(nginx_port, 10)
            wait_for_port(plain_port, 10)
            worker = worker_of(nginx.pid)
            for encoding, served in ENCODINGS.items():
                urls = {"published": f"http://127.0.0.1:{nginx_port}/analytics.js/v1/{key}/analytics.min.js",
                        "plain": f"http://127.0.0.1:{plain_port}/bundle.{served}.js"}
                runs: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
                for link in urls.values():
                    wrk(link, 1, connections, encoding, worker)  # warm-up
                for i in range(rounds):  # alternate, and alternate who goes first: the machine's other load hits both
                    for name in (("published", "plain") if i % 2 else ("plain", "published")):
                        runs[name].append(wrk(urls[name], seconds, connections, encoding, worker))
                rps = {name: Figure([r for r, _ in values]) for name, values in runs.items()}
                cpu = {name: Figure([c for _, c in values]) for name, values in runs.items()}
                paired = Figure([a[0] / b[0] for a, b in zip(runs["published"], runs["plain"])]).spread("{:.2f}")
                print(f"Accept-Encoding {encoding!r} ({served}): published (docs config) {rps['published'].spread('{:,.0f}')} "
                      f"req/s, {cpu['published'].spread('{:.1f}')} µs CPU/request   plain file, same bytes "
                      f"{rps['plain'].spread('{:,.0f}')} req/s, {cpu['plain'].spread('{:.1f}')} µs   ratio req/s "
                      f"{rps['published'].median / rps['plain'].median:.2f} (run by run {paired}), "
                      f"CPU plain/published {cpu['plain'].median / cpu['published'].median:.2f} (target >= 0.9)")
            print(f"Headers and bodies, nginx vs the origin (4 files x {len(COMPARED)} Accept-Encoding values; ignoring "
                  f"{', '.join(sorted(IGNORED - {'etag'}))}):")
            found = differences(f"http://127.0.0.1:{origin_port}", f"http://127.0.0.1:{nginx_port}",
                                published_paths(key, digest), COMPARED)
            for line in found:
                print("  " + line.replace(key, "{key}").replace(digest, "{hash}"))
            unknown = httpx.get(f"http://127.0.0.1:{nginx_port}/analytics.js/v1/no-such-key/analytics.min.js")
            print(f"  unknown key through nginx: {unknown.status_code} from the origin ({unknown.text.strip()})")
            print(f"  {len(found)} difference(s)" + ("" if found else ": identical"))
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

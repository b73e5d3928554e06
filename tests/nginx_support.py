"""Real nginx running docs/deployment.md's config over a publish directory, for
tests/test_publish_nginx.py and bench/static_publish.py: the config read from the page (so the
documented config is what runs), one nginx on a free port, and the comparison of its answers with
the origin's (headers and decoded bodies), as a list of the differences found."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import brotli
import httpx

from server.cdn.publish import MARKER

ROOT = Path(__file__).resolve().parent.parent
# Headers each server sets its own way (ETag values are nginx's; a 304 to its own ETag is checked).
IGNORED = {"date", "server", "connection", "keep-alive", "last-modified", "accept-ranges", "content-length", "etag"}


def find(cmd: str) -> str | None:
    """``nginx`` lives in /usr/sbin, which is not on every PATH."""
    return shutil.which(cmd) or (f"/usr/sbin/{cmd}" if Path(f"/usr/sbin/{cmd}").exists() else None)


def documented_config(www: Path, port: int, origin_port: int) -> str:
    """The ``server`` block and its ``map``s from docs/deployment.md, on loopback ports and ``www``."""
    page = (ROOT / "docs" / "deployment.md").read_text()
    section = page[page.index("### nginx serving the published files"):]
    block = section[section.index("```nginx\n") + 9:]
    block = block[:block.index("```")]
    block = block.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("/var/lib/switchboard/www", str(www))
    return block.replace("127.0.0.1:8000", f"127.0.0.1:{origin_port}")


def main_config(directory: Path, http_body: str) -> str:
    """A whole nginx.conf: one worker in the foreground, every file of its own in ``directory``.
    As root, the worker stays root: the test's temporary directories are not readable by nobody."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (f"{user}worker_processes 1; daemon off; pid {directory}/nginx.pid; error_log {directory}/error.log;\n"
            "pcre_jit on;\nevents { worker_connections 1024; }\n"
            f"http {{\n  access_log off; sendfile on; tcp_nopush on;\n"
            f"  client_body_temp_path {directory}; proxy_temp_path {directory};\n"
            f"  fastcgi_temp_path {directory}; uwsgi_temp_path {directory}; scgi_temp_path {directory};\n"
            f"{http_body}\n}}\n")


def start_nginx(directory: Path, http_body: str) -> subprocess.Popen:
    """nginx with ``http_body`` inside ``http { }``; the caller waits for its port and stops it."""
    nginx = find("nginx")
    if nginx is None:
        raise RuntimeError("nginx is not installed (make test installs the nginx package)")
    conf = directory / "nginx.conf"
    conf.write_text(main_config(directory, http_body))
    subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-p", str(directory)], check=True)
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(directory)])


def fetch(client: httpx.Client, url: str, encoding: str) -> httpx.Response:
    """The response with its body as sent (httpx would decode it)."""
    with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as response:
        response._content = b"".join(response.iter_raw())
    return response


def decode(response: httpx.Response) -> bytes:
    raw = response.content
    encoding = response.headers.get("content-encoding")
    return gzip.decompress(raw) if encoding == "gzip" else brotli.decompress(raw) if encoding == "br" else raw


def published_hash(www: Path, key: str) -> str | None:
    """The hash of the version published for ``key`` (from the publisher's marker, written last),
    or None while nothing is published yet."""
    try:
        return (www / "analytics.js/v1" / key / MARKER).read_text().split()[1]
    except FileNotFoundError:
        return None


def published_paths(key: str, digest: str) -> list[str]:
    """The four URLs a source has files for: bundle, hashed bundle, settings document, snippet."""
    return [f"/analytics.js/v1/{key}/analytics.min.js", f"/analytics.js/v1/{key}/analytics.{digest}.min.js",
            f"/v1/projects/{key}/settings", f"/snippet/{key}.js"]


def differences(origin: str, nginx: str, paths: list[str], encodings: list[str]) -> list[str]:
    """Every way nginx's answers differ from the origin's for ``paths`` under each Accept-Encoding:
    status, decoded body, any header but ``IGNORED``, and (for a 200) a 304 to nginx's own ETag."""
    found = []
    with httpx.Client() as client:
        for path in paths:
            for encoding in encodings:
                ours, theirs = fetch(client, origin + path, encoding), fetch(client, nginx + path, encoding)
                where = f"{path} (Accept-Encoding {encoding!r})"
                if ours.status_code != theirs.status_code:
                    found.append(f"{where}: status origin {ours.status_code}, nginx {theirs.status_code}")
                if decode(ours) != decode(theirs):
                    found.append(f"{where}: body differs")
                a = {k: v for k, v in ours.headers.items() if k not in IGNORED}
                b = {k: v for k, v in theirs.headers.items() if k not in IGNORED}
                for name in sorted(a.keys() | b.keys()):
                    if a.get(name) != b.get(name):
                        found.append(f"{where}: {name}: origin {a.get(name)!r}, nginx {b.get(name)!r}")
                if theirs.status_code != 200:
                    continue
                tag = theirs.headers.get("etag") or ""
                again = client.get(nginx + path, headers={"Accept-Encoding": encoding, "If-None-Match": tag})
                if again.status_code != 304:
                    found.append(f"{where}: nginx answered {again.status_code} to its own ETag")
    return found

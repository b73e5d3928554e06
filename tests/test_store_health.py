"""When the store can't write, a real ``switchboard serve`` says so quickly and holds its memory.

- A SQLite file another process holds with ``BEGIN EXCLUSIVE``, while clients keep resending
  batches: every refusal is a 503 with ``Retry-After`` and a JSON code, answered in seconds (not
  the old 30 s hang), the server's RSS stays bounded, ``/readyz`` is 503, an admin write is a
  503 ``store_unavailable`` — and once the lock is released, every event acknowledged is stored.
- A full disk (a small tmpfs): the same answers, no 500 anywhere, and recovery once space is freed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from server.config import Config
from server.store import events, open_store, tokens, workspace
from server.web import accounts

PASSWORD = "correct horse battery staple"
SERVER_ENV = {"SWITCHBOARD_DELIVERY_WORKERS": "false", "SWITCHBOARD_SQLITE_BUSY_TIMEOUT": "1"}

HOLDER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("COMMIT")
print("released", flush=True)
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Lock:
    """Another process holding the SQLite file's write lock until ``release()``."""

    def __init__(self, path: Path):
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            assert self.process.stdout.readline().strip() == "released"
            self.process.wait(10)


class Resender(threading.Thread):
    """A client that sends batches and resends each one until it gets a 200 (as SDKs do)."""

    def __init__(self, url: str, key: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, timeout=60)
        self.key, self.stop = key, stop
        self.acked: set[str] = set()
        self.refusals: list[tuple[float, int, str, str | None]] = []  # seconds, status, code, Retry-After
        self.errors: list[str] = []
        self.pending: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set() or self.pending:
            if not self.pending:
                self.pending = [f"m-{uuid.uuid4().hex}" for _ in range(50)]
            batch = [{"type": "track", "userId": "u", "event": "Resent", "messageId": m,
                      "properties": {"pad": "p" * 900}} for m in self.pending]
            started = time.monotonic()
            try:
                response = self.http.post("/v1/batch", content=orjson.dumps({"writeKey": self.key, "batch": batch}))
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc))
                continue
            took = time.monotonic() - started
            if response.status_code == 200:
                self.acked.update(self.pending)
                self.pending = []
            elif response.status_code == 503:
                self.refusals.append((took, 503, response.json().get("code"), response.headers.get("retry-after")))
                time.sleep(0.02)  # an impatient client: resends at once
            else:
                self.errors.append(f"{response.status_code} {response.text[:200]}")
                self.pending = []
        self.http.close()


def test_a_locked_sqlite_file_with_clients_resending(live_server_factory, tmp_path):
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    engine = open_store(url)
    source = workspace.create_source(engine, "Backend")
    token = tokens.create_token(engine, "lock-test")
    engine.dispose()
    server = live_server_factory(url, **SERVER_ENV)
    admin = httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"})
    warm = admin.post("/v1/batch", content=orjson.dumps({"writeKey": source["write_key"], "batch": [
        {"type": "track", "userId": "u", "event": "Warm", "messageId": f"warm-{i}"} for i in range(100)]}))
    assert warm.status_code == 200
    rss_before = rss_mb(server.process.pid)

    lock = Lock(path)
    try:
        stop = threading.Event()
        clients = [Resender(server.url, source["write_key"], stop) for _ in range(8)]
        for c in clients:
            c.start()
        peak = rss_before
        started = time.monotonic()
        while time.monotonic() - started < 8:
            peak = max(peak, rss_mb(server.process.pid))
            time.sleep(0.2)

        # While locked: readiness and an admin write say so, quickly, as JSON.
        t0 = time.monotonic()
        ready = admin.get("/readyz")
        assert ready.status_code == 503 and ready.json()["code"].startswith("store_")
        assert "locked" in ready.json()["message"]
        t1 = time.monotonic()
        created = admin.post("/api/v1/sources", json={"name": "During the lock"})
        t2 = time.monotonic()
        assert created.status_code == 503, created.text
        assert created.json()["code"] == "store_unavailable" and created.headers["retry-after"]
        assert t1 - t0 < 3 and t2 - t1 < 5  # a 1 s busy timeout, not the old 30 s

        refusals = [r for c in clients for r in c.refusals]
        assert len(refusals) > 20  # the clients really did resend against the lock
        assert all(status == 503 and retry and code in ("storage_busy", "storage_unavailable")
                   for _, status, code, retry in refusals)
        assert max(took for took, *_ in refusals) < 5
        acked_during_lock = {m for c in clients for m in c.acked}
        assert not acked_during_lock  # nothing can be acknowledged while nothing can be stored
    finally:
        lock.release()
    stop.set()
    for c in clients:
        c.join(60)
        assert not c.is_alive()
    peak = max(peak, rss_mb(server.process.pid))
    assert [e for c in clients for e in c.errors] == []
    # Bounded: 8 clients resending 50 KB batches for 8 s (the unbounded queue grew by ~600 MB).
    assert peak - rss_before < 80, (rss_before, peak)

    # After the release: everything acknowledged is stored, and the server is ready again.
    acked = {m for c in clients for m in c.acked}
    assert all(len(c.acked) >= 50 for c in clients)  # each client's resent batch got through
    engine = open_store(url)
    stored = {e["message_id"] for e in events.list_events(engine, source["id"], limit=5000)}
    engine.dispose()
    assert acked <= stored
    deadline = time.monotonic() + 15
    while admin.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "readyz never recovered"
        time.sleep(0.3)
    assert admin.post("/api/v1/sources", json={"name": "After the lock"}).status_code == 201
    admin.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (root only; skipped with the reason where mounting is not allowed)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    """Fill the file system until not one byte more fits; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_a_full_disk(live_server_factory, small_disk):
    url = f"sqlite:///{small_disk / 'full.db'}"
    engine = open_store(url)
    source = workspace.create_source(engine, "Backend")
    token = tokens.create_token(engine, "disk-test")
    accounts.ensure_admin(Config(database_url=url, admin_password=PASSWORD), engine)
    engine.dispose()
    server = live_server_factory(url, **SERVER_ENV)
    http = httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"})
    browser = httpx.Client(base_url=server.url, timeout=60, headers={"Accept": "text/html"})
    signed = browser.post("/sign-in", data={"csrf_token": _csrf(browser.get("/sign-in").text), "username": "admin",
                                            "password": PASSWORD, "next": "/sources"})
    assert signed.status_code in (200, 303)
    csrf = _csrf(browser.get("/sources").text)

    def send(n: int, run: str) -> httpx.Response:
        return http.post("/v1/batch", content=orjson.dumps({"writeKey": source["write_key"], "batch": [
            {"type": "track", "userId": "u", "event": "Disk", "messageId": f"{run}-{i}",
             "properties": {"pad": "d" * 2000}} for i in range(n)]}))

    assert send(10, "before").status_code == 200
    assert http.get("/readyz").status_code == 200
    filler = _fill(small_disk)
    try:
        answers = [send(200, f"full-{n}") for n in range(5)]
        assert all(a.status_code == 503 for a in answers), [a.status_code for a in answers]
        assert all(a.json()["code"] in ("storage_unavailable", "storage_busy") and a.headers["retry-after"]
                   for a in answers)
        time.sleep(1.1)  # past the probe's one-second memory
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "full" in ready.json()["message"]
        created = http.post("/api/v1/sources", json={"name": "On a full disk"})
        assert created.status_code == 503 and created.json()["code"] == "store_unavailable", created.text
        assert "full" in created.json()["message"]
        # A person in the web app gets a page that says what happened, not a 500.
        page = browser.post("/sources", data={"csrf_token": csrf, "name": "From the web app"})
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert "the store is unavailable" in page.text and "disk or database is full" in page.text
    finally:
        os.remove(filler)

    deadline = time.monotonic() + 15
    while (ready := http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, f"readyz never recovered: {ready.text}"
        time.sleep(0.3)
    assert send(10, "after").status_code == 200
    assert http.post("/api/v1/sources", json={"name": "After"}).status_code == 201
    engine = open_store(url)
    stored = {e["message_id"] for e in events.list_events(engine, source["id"], limit=5000)}
    engine.dispose()
    assert {f"before-{i}" for i in range(10)} | {f"after-{i}" for i in range(10)} <= stored
    assert not any(m.startswith("full-") for m in stored)  # answered 503: the clients keep them
    http.close()
    browser.close()


@pytest.mark.postgres
def test_postgresql_read_only_and_dropped_connections(live_server_factory, pg):
    """PostgreSQL put read-only (as a failed-over replica or a full-disk guard would) and every
    server connection cut: 503s with codes, never a 500, and recovery when writes are allowed."""
    import psycopg

    url = pg.create_database()
    name = url.rsplit("/", 1)[1]
    engine = open_store(url)
    source = workspace.create_source(engine, "Backend")
    token = tokens.create_token(engine, "pg-test")
    engine.dispose()
    server = live_server_factory(url, SWITCHBOARD_DELIVERY_WORKERS="false")
    http = httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"})

    def send(run: str) -> httpx.Response:
        return http.post("/v1/batch", content=orjson.dumps({"writeKey": source["write_key"], "batch": [
            {"type": "track", "userId": "u", "event": "PG", "messageId": f"{run}-{i}"} for i in range(5)]}))

    def admin_sql(*statements: str) -> None:
        with psycopg.connect(f"host=127.0.0.1 port={pg.port} user={pg.user} dbname=postgres", autocommit=True) as c:
            for statement in statements:
                c.execute(statement)

    assert send("before").status_code == 200
    admin_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
              f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    try:
        answers = [send(f"ro-{n}") for n in range(3)]
        assert all(a.status_code == 503 and a.headers["retry-after"] for a in answers), [a.text for a in answers]
        created = http.post("/api/v1/sources", json={"name": "Read-only"})
        assert created.status_code == 503 and created.json()["code"] == "store_unavailable", created.text
        time.sleep(1.1)
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "read-only" in ready.json()["message"]
    finally:
        admin_sql(f'ALTER DATABASE "{name}" RESET default_transaction_read_only',
                  f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    deadline = time.monotonic() + 15
    while (after := send("after")).status_code != 200:
        assert after.status_code == 503, after.text
        assert time.monotonic() < deadline, after.text
        time.sleep(0.3)
    assert http.post("/api/v1/sources", json={"name": "Writable again"}).status_code == 201
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    http.close()

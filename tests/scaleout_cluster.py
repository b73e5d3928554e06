"""A small Switchboard cluster on one PostgreSQL, for the scale-out tests and bench/scale.py:
server and worker subprocesses, a webhook receiver on 127.0.0.1 that records every message id
it gets, and helpers to configure a source and to send events in batches."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable

import httpx

from pgserver import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "scaleout-test-admin-token"


# ---------------------------------------------------------------- processes


class Process:
    """``switchboard <args>`` in a subprocess with SWITCHBOARD_* settings."""

    def __init__(self, args: list[str], database_url: str, env: dict[str, str], port: int | None = None):
        self.args, self.port = args, port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.env = {
            **os.environ,
            "SWITCHBOARD_DATABASE_URL": database_url,
            "SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "SWITCHBOARD_LOG_LEVEL": "WARNING",
            **({"SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_PORT": str(port)} if port else {}),
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "Process":
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-m", "server.cli", *self.args], env=self.env, cwd=ROOT,
                                        stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        try:
            if self.port:
                wait_for_port(self.port, 30)
            else:
                self.wait_line("switchboard worker", 30)  # a worker says so once it is delivering
        except TimeoutError:
            self.stop()
            raise
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if not self.alive():
                break
            time.sleep(0.05)
        raise TimeoutError(f"{self.args[0]} did not print {prefix!r}; output: {self.lines[-5:]}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.alive():
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then wait; kill -9 if it does not exit in time. Returns the exit status."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode if self.process else None


def server(database_url: str, role: str = "edge", **env: str) -> Process:
    return Process(["serve"], database_url, {"SWITCHBOARD_ROLE": role, **env}, port=free_port())


def worker(database_url: str, lease_seconds: float = 60, **env: str) -> Process:
    return Process(["worker", "--lease-seconds", str(lease_seconds)], database_url, env)


# ---------------------------------------------------------------- the webhook receiver


class Receiver:
    """A real HTTP server on 127.0.0.1 that records the messageId of every event POSTed to it."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.broken = 0  # connections dropped by the sender mid-request
        self.lock = threading.Lock()
        self.received: list[tuple[float, str]] = []  # (monotonic time, messageId), in arrival order
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    parsed = json.loads(body)
                except ValueError:  # cut short: its sender was killed mid-request (nothing delivered)
                    receiver.broken += 1
                    return
                receiver.record(parsed)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # listen() backlog; the default 5 resets bursts of new connections
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A killed or stopping worker drops its connections: count it, no traceback.
                if isinstance(sys.exc_info()[1], ConnectionError):
                    receiver.broken += 1
                else:
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, body) -> None:
        items = body if isinstance(body, list) else body.get("batch", [body]) if isinstance(body, dict) else []
        now = time.monotonic()
        with self.lock:
            self.received.extend((now, item.get("messageId")) for item in items)

    def counts(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(message_id for _, message_id in self.received)

    def first_seen(self) -> dict[str, float]:
        with self.lock:
            seen: dict[str, float] = {}
            for at, message_id in self.received:
                seen.setdefault(message_id, at)
            return seen

    def wait_for(self, message_ids: Iterable[str], timeout: float) -> set[str]:
        """Wait until every id arrived (or the timeout); return the ids still missing."""
        wanted = set(message_ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - set(self.counts())
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)

    def wait_count(self, n: int, timeout: float = 30) -> None:
        """Wait until ``n`` distinct message ids have arrived (delivery is under way)."""
        deadline = time.monotonic() + timeout
        while len(self.counts()) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.counts())} of {n} events arrived in {timeout}s")
            time.sleep(0.01)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- admin API and Tracking API


def admin(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def create_source(base_url: str, name: str) -> dict:
    with admin(base_url) as client:
        response = client.post("/api/v1/sources", json={"name": name})
        response.raise_for_status()
        return response.json()


def add_destination(base_url: str, source_id: int, slug: str, settings: dict, mode: str = "cloud") -> dict:
    with admin(base_url) as client:
        response = client.post(f"/api/v1/sources/{source_id}/destinations",
                               json={"slug": slug, "mode": mode, "enabled": True, "settings": settings})
        response.raise_for_status()
        return response.json()


def make_batch(n: int, prefix: str) -> list[dict]:
    return [
        {"type": "track", "event": "Scale Test", "messageId": f"{prefix}-{uuid.uuid4().hex}",
         "anonymousId": f"anon-{i % 97}", "properties": {"i": i}}
        for i in range(n)
    ]


def send_batches(urls: list[str], write_key: str, batches: list[list[dict]], concurrency: int = 8) -> None:
    """POST each batch to /v1/batch, round-robin over ``urls``, ``concurrency`` at a time; every
    answer must be Segment's success (so every event was committed)."""
    errors: list[str] = []
    jobs = list(enumerate(batches))
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client(auth=(write_key, ""), timeout=60) as client:
            while True:
                with lock:
                    if not jobs or errors:
                        return
                    index, batch = jobs.pop()
                response = client.post(f"{urls[index % len(urls)]}/v1/batch", json={"batch": batch})
                if response.status_code != 200 or response.json() != {"success": True}:
                    with lock:
                        errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise AssertionError(f"{len(errors)} batch(es) refused, first: {errors[0]}")


# ---------------------------------------------------------------- duplicates, explained


def explain_duplicates(engine, destination_id: int, receiver: Receiver,
                       killed: tuple[int, float] | None = None) -> list[str]:
    """One line per message id the receiver got more than once, saying why (from the job's
    attempts, and the receipt times against a kill -9 given as (pid, monotonic time))."""
    from sqlalchemy import select

    from server.store.delivery import delivery_attempts, delivery_jobs

    counts = receiver.counts()
    duplicated = {message_id: n for message_id, n in counts.items() if n > 1}
    if not duplicated:
        return []
    first_seen = receiver.first_seen()
    lines = []
    with engine.connect() as conn:
        jobs = {row.message_id: row for row in conn.execute(
            select(delivery_jobs).where(delivery_jobs.c.destination_id == destination_id,
                                        delivery_jobs.c.message_id.in_(list(duplicated))))}
        for message_id, n in sorted(duplicated.items()):
            job = jobs.get(message_id)
            if job is None:
                lines.append(f"{message_id}: received {n}x, but no delivery job exists (a bug)")
                continue
            tries = conn.execute(select(delivery_attempts.c.outcome, delivery_attempts.c.status,
                                        delivery_attempts.c.error)
                                 .where(delivery_attempts.c.job_id == job.id)
                                 .order_by(delivery_attempts.c.id)).all()
            retries = [t for t in tries if t.outcome == "retry"]
            # A request the victim had already written may reach the receiver just after the kill.
            if killed and first_seen[message_id] < killed[1] + 1.0:
                why = (f"first sent by worker pid {killed[0]}, killed (-9) before it recorded the outcome; "
                       f"sent again by another worker after the lease ran out")
            elif retries:
                why = f"retried after {retries[0].status or retries[0].error} although the request had arrived"
            else:
                why = ("the lease ran out while the request was queued or in flight, and another worker "
                       "claimed the job (at-least-once)")
            lines.append(f"{message_id}: received {n}x, job {job.id} {job.status}, "
                         f"{len(tries)} attempt(s) recorded — {why}")
    return lines


def job_statuses(engine, destination_id: int, want: dict[str, int] | None = None, timeout: float = 20) -> dict:
    """{status: count} of a destination's jobs; with ``want``, wait up to ``timeout`` for it (a
    worker records outcomes just after the receiver has seen the request)."""
    from sqlalchemy import func, select

    from server.store.delivery import delivery_jobs

    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            statuses = dict(conn.execute(
                select(delivery_jobs.c.status, func.count()).where(delivery_jobs.c.destination_id == destination_id)
                .group_by(delivery_jobs.c.status)).all())
        if want is None or statuses == want or time.monotonic() > deadline:
            return statuses
        time.sleep(0.1)

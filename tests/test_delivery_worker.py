"""`switchboard worker` as a real process: kill -9 mid-delivery loses nothing; SIGTERM is graceful.
And the whole path through the real collector: POST /v1/batch → `switchboard serve` → webhook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from delivery_flow import append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.store import delivery as store
from server.store import open_store

ROOT = Path(__file__).resolve().parent.parent


def start_worker(db_url: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "server.cli", "worker", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def slow(record):
    time.sleep(0.02)
    return 200, {}, b"ok"


def test_kill_9_of_a_worker_mid_delivery_then_restart_loses_nothing(db_url):
    engine = open_store(db_url)
    with Vendor(slow) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        sent = [make_event("track", event=f"E{i}", userId=f"u{i}") for i in range(300)]
        append(engine, source["id"], sent)
        first = start_worker(db_url, "--lease-seconds", "1.5", "--concurrency", "4")
        try:
            vendor.wait_for(60, timeout=60)
        finally:
            first.kill()  # SIGKILL: no cleanup at all
            first.wait(10)
        before = len(vendor.snapshot())
        assert before < 300, "the worker must be killed mid-delivery"
        second = start_worker(db_url, "--lease-seconds", "1.5", "--concurrency", "8")
        try:
            wait_until(lambda: sum(j["status"] == store.DELIVERED for j in jobs(engine, dest["id"])) == 300,
                       timeout=90, what="all 300 delivered after the restart")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
    received = [r.json()["messageId"] for r in vendor.snapshot()]
    assert set(received) == {e["messageId"] for e in sent}
    # Re-sent only what was in flight or unrecorded at the kill, under the same messageId.
    assert len(received) - 300 <= before
    assert all(j["lease_owner"] is None for j in jobs(engine, dest["id"]))
    engine.dispose()


def test_sigterm_finishes_in_flight_sends_and_releases_the_rest(sqlite_url):
    engine = open_store(sqlite_url)

    def sluggish(record):
        time.sleep(0.5)
        return 200, {}, b"ok"

    with Vendor(sluggish) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        append(engine, source["id"], [make_event("track", event=f"E{i}") for i in range(40)])
        worker = start_worker(sqlite_url, "--concurrency", "2", "--lease-seconds", "120")
        try:
            vendor.wait_for(2, timeout=60)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
        output = worker.stdout.read()
        assert "switchboard worker stopped" in output
        answered = len(vendor.snapshot())
    found = jobs(engine, dest["id"])
    delivered = [j for j in found if j["status"] == store.DELIVERED]
    # Every request the vendor saw was recorded as delivered; the rest wait, unleased, for the
    # next worker (not for the 120 s lease to run out).
    assert len(delivered) == answered >= 2
    assert all(j["status"] == store.QUEUED and j["lease_owner"] is None for j in found if j not in delivered)
    engine.dispose()


def test_events_posted_to_the_collector_reach_the_webhook(live_server_factory, sqlite_url):
    engine = open_store(sqlite_url)
    with Vendor() as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in",
                                                                               "shared_secret": "shh"}})
        server = live_server_factory(sqlite_url)
        batch = [{"type": "track", "event": f"Clicked {i}", "userId": "u-1", "messageId": f"m-{i}",
                  "properties": {"n": i}} for i in range(20)]
        batch.append({"type": "track", "event": "Not for hooks", "userId": "u-1", "messageId": "m-skip",
                      "integrations": {"Webhooks": False}})
        answer = httpx.post(f"{server.url}/v1/batch", json={"writeKey": source["write_key"], "batch": batch})
        assert answer.status_code == 200
        got = vendor.wait_for(20, timeout=30)
        time.sleep(0.3)  # anything extra would have arrived by now
        got = vendor.snapshot()
    assert sorted(r.json()["messageId"] for r in got) == sorted(f"m-{i}" for i in range(20))
    body = got[0].json()
    assert body["type"] == "track" and body["properties"]["n"] >= 0 and "receivedAt" in body
    stats = [j for j in jobs(engine, dest["id"])]
    assert len(stats) == 20 and all(j["status"] == store.DELIVERED for j in stats)
    engine.dispose()

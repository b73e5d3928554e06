"""Workers sleep on the change bus: an idle server's background planes query nothing, and a new
event still starts its delivery at once — in the same process, and from another process (NOTIFY
on PostgreSQL, the bell directory on SQLite).

The rule for counting: every statement the worker planes (``server.worker.WORKER_PLANES``: bus
listener, delivery, warehouse scheduler, privacy runner) send through the engine is counted
with a ``before_cursor_execute`` listener. Only the delivery heartbeat may query while idle — it
is how a worker killed with -9 is taken over within seconds (docs/delivery.md) — and it is
counted apart: statements sent from the heartbeat's own thread (``delivery-heartbeat``), at most
a few per ``HEARTBEAT_S``.
Everything else must be zero over 5 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import event

from delivery_flow import RunningService, append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server import warehouse
from server.delivery.heartbeat import HEARTBEAT_S
from server.store import delivery as store
from server.store import notify, open_store, workspace
from server.worker import WORKER_PLANES

ROOT = Path(__file__).resolve().parent.parent
IDLE_S = 5.0


class Statements:
    """Every statement sent through ``engine`` while counting, heartbeats apart."""

    def __init__(self, engine):
        self.engine, self.heartbeat, self.other = engine, [], []
        self.counting = False
        self.test_thread = threading.current_thread()

    def __enter__(self) -> "Statements":
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        thread = threading.current_thread()
        if self.counting and thread is not self.test_thread:  # the test's own appends are not counted
            beat = thread.name == "delivery-heartbeat"
            (self.heartbeat if beat else self.other).append(statement)


class WorkerPlanes:
    """The planes ``switchboard worker`` runs, on a background event loop, as it runs them."""

    def __init__(self, config, engine, catalog):
        self.host = SimpleNamespace(state=SimpleNamespace(
            config=dataclasses.replace(config, delivery_workers=True), engine=engine, catalog=catalog,
            delivery_options={}, erasers=[warehouse.erase_users]))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def __enter__(self) -> "WorkerPlanes":
        self.thread.start()

        async def start():
            for plane in WORKER_PLANES:
                await plane.startup(self.host)

        self._call(start())
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            for plane in reversed(WORKER_PLANES):
                await plane.shutdown(self.host)

        try:
            self._call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def test_an_idle_servers_workers_make_no_store_query_over_5_s(config, engine, catalog):
    with Vendor() as vendor, Statements(engine) as statements:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        with WorkerPlanes(config, engine, catalog):
            # Some work first, so that the workers have been through fan-out, lanes and results.
            append(engine, source["id"], [make_event("track", event=f"E{i}") for i in range(5)])
            wait_until(lambda: sum(j["status"] == store.DELIVERED for j in jobs(engine, dest["id"])) == 5,
                       timeout=30, what="the warm-up events delivered")
            time.sleep(1.5)  # the lanes end, the last results are written, the dispatcher looks once
            statements.counting = True
            time.sleep(IDLE_S)
            statements.counting = False
    assert statements.other == [], statements.other
    # The heartbeat (a beat and a look at the others, a few statements) every HEARTBEAT_S at most.
    assert len(statements.heartbeat) <= 6 * (IDLE_S / HEARTBEAT_S + 1), statements.heartbeat


def test_a_new_event_starts_delivery_at_once_in_the_same_process(engine, catalog):
    with Vendor() as vendor:
        source, _ = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        with RunningService(engine, catalog):  # the default 30 s safety poll
            time.sleep(1.0)  # asleep on the bus by now
            began = time.monotonic()
            append(engine, source["id"], [make_event("track", event="Prompt")])
            (request,) = vendor.wait_for(1, timeout=10)
    assert request.at - began < 1.0, request.at - began


def start_worker(db_url: str) -> subprocess.Popen:
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_an_event_appended_by_another_process_starts_delivery_at_once(db_url):
    """The writer is this test process with the bus's listener running, as in `switchboard serve`."""
    engine = open_store(db_url)
    listener = notify.listen(engine)
    try:
        with Vendor() as vendor:
            source, _ = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
            worker = start_worker(db_url)
            try:
                assert "delivering from" in worker.stdout.readline()
                time.sleep(1.5)  # past its first passes: asleep on the bus
                began = time.monotonic()
                append(engine, source["id"], [make_event("track", event="Prompt")])
                (request,) = vendor.wait_for(1, timeout=40)
            finally:
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(20) == 0
    finally:
        listener.stop()
        engine.dispose()
    assert request.at - began < 1.0, request.at - began


def _delivery_after_adding(db_url: str, add) -> float:
    """A worker starts on a source with nothing to route to and falls asleep on the bus; then
    ``add(engine, source, vendor_url)`` adds a cloud destination and this process (its bus
    running, as `switchboard serve`) appends an event. Seconds until the vendor got it."""
    engine = open_store(db_url)
    listener = notify.listen(engine)
    try:
        with Vendor() as vendor:
            source, _ = source_with(engine, {"slug": "google_analytics_4", "mode": "device",
                                             "settings": {"measurement_id": "G-TEST"}})
            worker = start_worker(db_url)
            try:
                assert "delivering from" in worker.stdout.readline()
                time.sleep(1.5)  # it has looked: nothing routable, asleep on the bus
                add(engine, source, vendor.url)
                time.sleep(0.5)
                began = time.monotonic()
                append(engine, source["id"], [make_event("track", event="After")])
                (request,) = vendor.wait_for(1, timeout=40)
            finally:
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(20) == 0
    finally:
        listener.stop()
        engine.dispose()
    assert request.json()["event"] == "After"
    return request.at - began


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_destination_added_by_another_process_is_routed_at_once_on_sqlite(db_url):
    """This process adds it with its bus running (as `switchboard serve` does): on SQLite the
    bell carries the settings change, and the next event is delivered within a second."""
    def add(engine, source, url):
        workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                  settings={"url": url + "/in"})

    assert _delivery_after_adding(db_url, add) < 2.0  # not the 30 s safety poll


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_destination_added_with_the_cli_is_routed_at_once_on_sqlite(db_url):
    """`switchboard destinations add` rings the bell as it commits (server/store/bell.py,
    ring_only): the next event is delivered within a second, not at the 30 s safety poll."""
    def add(engine, source, url):
        added = subprocess.run(
            [sys.executable, "-m", "server.cli", "destinations", "add", str(source["id"]), "webhooks",
             "--mode", "cloud", "--set", f"url={url}/in", "--enable"],
            env={**os.environ, "SWITCHBOARD_DATABASE_URL": db_url}, cwd=ROOT, capture_output=True, text=True,
            timeout=60)
        assert added.returncode == 0, added.stderr

    assert _delivery_after_adding(db_url, add) < 2.0


def test_a_destination_added_without_telling_the_worker_is_found_at_its_safety_poll(engine, catalog):
    """A writer that tells nobody (the CLI on SQLite runs no bus): the worker, which found
    nothing to route to, looks again at its safety poll, and events from then on are delivered."""
    with Vendor() as vendor:
        source, _ = source_with(engine, {"slug": "google_analytics_4", "mode": "device",
                                         "settings": {"measurement_id": "G-TEST"}})
        with RunningService(engine, catalog, safety_poll=0.5) as service:
            time.sleep(0.3)
            unsubscribe = service._unsubscribe  # as if this process's bus did not reach it
            for stop in unsubscribe:
                stop()
            workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                      settings={"url": vendor.url + "/in"})
            append(engine, source["id"], [make_event("track", event="Found")])
            (request,) = vendor.wait_for(1, timeout=10)
    assert request.json()["event"] == "Found"


def test_replayed_dead_letters_are_sent_at_once_by_an_idle_worker(engine, catalog):
    def refuse_then_accept(record, seen=[]):
        seen.append(record)
        return (400, {}, b"no") if len(seen) == 1 else (200, {}, b"ok")

    with Vendor(refuse_then_accept) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        with RunningService(engine, catalog):
            append(engine, source["id"], [make_event("track", event="Once")])
            wait_until(lambda: [j["status"] for j in jobs(engine, dest["id"])] == [store.DEAD], timeout=10,
                       what="a dead letter")
            time.sleep(1.0)
            began = time.monotonic()
            assert store.replay(engine, dest["id"]) == 1
            vendor.wait_for(2, timeout=10)
    assert vendor.snapshot()[1].at - began < 1.0


def test_events_of_a_source_without_cloud_destinations_cost_delivery_nothing(engine, catalog):
    """No jobs, and the fan-out does not even read them; a cloud destination added later gets
    the events received after it, not the ones before (older than ``fanout.SKIP_MARGIN``)."""
    with Vendor() as vendor, Statements(engine) as statements:
        source, _ = source_with(engine, {"slug": "google_analytics_4", "mode": "device",
                                         "settings": {"measurement_id": "G-TEST"}})
        with RunningService(engine, catalog):
            time.sleep(1.0)
            statements.counting = True
            for round_ in range(4):
                append(engine, source["id"], [make_event("track", event=f"Before{round_}-{i}") for i in range(5)])
                time.sleep(0.1)
            time.sleep(1.0)
            statements.counting = False
            assert statements.other == [], statements.other
            assert jobs(engine) == []
            time.sleep(1.5)  # past the fan-out's margin (SKIP_MARGIN) for appends still committing
            workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                      settings={"url": vendor.url + "/in"})
            after = [make_event("track", event=f"After{i}") for i in range(3)]
            append(engine, source["id"], after)
            vendor.wait_for(3, timeout=10)
            time.sleep(0.5)
    assert sorted(r.json()["event"] for r in vendor.snapshot()) == sorted(e["event"] for e in after)

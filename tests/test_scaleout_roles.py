"""Roles and graceful shutdown on PostgreSQL: an edge server stores events but sends nothing
until a worker runs; a plain ``serve`` (role all) delivers by itself; a worker stopped with
SIGTERM finishes what is in flight and gives its other leases back at once; a server stopped
with SIGTERM under load has stored every event it acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from scaleout_cluster import (
    ROOT, Receiver, add_destination, create_source, explain_duplicates, job_statuses, make_batch, send_batches, server,
    worker,
)
from server.store import open_store
from server.store.delivery import delivery_jobs
from server.store.events import events
from server.store.warehouse import warehouse_syncs
from server.warehouse.naming import schema_name

@pytest.fixture
def pg_url(pg):
    engine = open_store(url := pg.create_database())
    yield url, engine
    engine.dispose()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def processes():
    started = []
    yield started
    for process in started:
        process.stop()


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


@pytest.mark.postgres
def test_an_edge_stores_events_and_only_a_worker_delivers_them(pg_url, receiver, processes):
    url, engine = pg_url
    edge = server(url, "edge").start()
    processes.append(edge)
    source = create_source(edge.url, "Edge")
    add_destination(edge.url, source["id"], "webhooks", {"url": receiver.url})
    batch = make_batch(20, "edge")
    send_batches([edge.url], source["write_key"], [batch])
    time.sleep(1.5)  # an edge with delivery running would have delivered by now
    assert count(engine, events) == 20
    assert count(engine, delivery_jobs) == 0 and not receiver.counts()
    processes.append(worker(url).start())
    assert not receiver.wait_for([e["messageId"] for e in batch], timeout=20)


@pytest.mark.postgres
def test_with_edge_servers_the_workers_load_the_warehouse_once(pg, pg_url, processes):
    """Both workers run the warehouse scheduler; its lock lets one load at a time, so every
    event lands exactly once and no sync fails."""
    url, engine = pg_url
    warehouse_url = pg.create_database()
    edge = server(url, "edge").start()
    processes += [edge, worker(url).start(), worker(url).start()]
    source = create_source(edge.url, "Edge Warehouse")
    destination = add_destination(edge.url, source["id"], "warehouse", {
        "target": "postgresql", "database_url": warehouse_url, "sync_interval_seconds": 1})
    schema = schema_name(source["slug"])
    target = create_engine(warehouse_url)

    def loaded() -> int:
        with target.connect() as conn:
            exists = conn.execute(text("SELECT to_regclass(:t)"), {"t": f"{schema}.tracks"}).scalar()
            return conn.execute(text(f'SELECT count(DISTINCT id) FROM "{schema}".tracks')).scalar() if exists else 0

    try:
        for round_ in range(3):
            send_batches([edge.url], source["write_key"], [make_batch(20, f"wh{round_}")])
            deadline = time.monotonic() + 30
            while loaded() < 20 * (round_ + 1) and time.monotonic() < deadline:
                time.sleep(0.2)
        with target.connect() as conn:
            rows = conn.execute(text(f'SELECT count(*) FROM "{schema}".tracks')).scalar()
        assert (loaded(), rows) == (60, 60), "the workers did not load every event exactly once"
        with engine.connect() as conn:
            failed = conn.execute(select(func.count()).select_from(warehouse_syncs).where(
                warehouse_syncs.c.destination_id == destination["id"], warehouse_syncs.c.error.is_not(None))).scalar()
        assert failed == 0
    finally:
        target.dispose()


@pytest.mark.postgres
def test_serve_with_role_all_delivers_by_itself(pg_url, receiver, processes):
    url, engine = pg_url
    whole = server(url, "all").start()
    processes.append(whole)
    source = create_source(whole.url, "All")
    add_destination(whole.url, source["id"], "webhooks", {"url": receiver.url})
    batch = make_batch(20, "all")
    send_batches([whole.url], source["write_key"], [batch])
    assert not receiver.wait_for([e["messageId"] for e in batch], timeout=20)


@pytest.mark.postgres
def test_sigterm_to_a_worker_releases_its_leases_at_once(pg_url, processes):
    url, engine = pg_url
    slow = Receiver(delay=0.05)
    try:
        edge = server(url, "edge").start()
        processes.append(edge)
        source = create_source(edge.url, "Graceful")
        destination = add_destination(edge.url, source["id"], "webhooks", {"url": slow.url})
        batches = [make_batch(100, f"g{i}") for i in range(6)]
        send_batches([edge.url], source["write_key"], batches)
        # Long leases: if the stopped worker did not give its jobs back, the other would wait 120 s.
        first, second = worker(url, 120).start(), worker(url, 120).start()
        processes += [first, second]
        slow.wait_count(60)
        stopped_at = time.monotonic()
        assert first.stop(timeout=30) == 0, first.lines[-5:]
        print(f"worker stopped {time.monotonic() - stopped_at:.2f}s after SIGTERM; output: {first.lines}")
        assert first.lines[-1] == "switchboard worker stopped"
        assert count(engine, delivery_jobs, delivery_jobs.c.lease_owner.like(f"%:{first.pid}:%")) == 0
        missing = slow.wait_for([e["messageId"] for b in batches for e in b], timeout=40)
        assert not missing, f"{len(missing)} event(s) stuck behind the stopped worker's leases"
        assert job_statuses(engine, destination["id"], {"delivered": 600}) == {"delivered": 600}
    finally:
        slow.close()


@pytest.mark.postgres
def test_a_job_whose_lease_ran_out_in_a_workers_queue_is_not_sent_twice(pg_url, processes):
    """Each worker leases 4 jobs at a time (its queue) but sends one at a time, 0.6 s each, with
    2 s leases: the 4th job of a batch would be sent 1.8 s into a 2 s lease, while the other
    worker may already have claimed it. A worker must let such a job go instead of sending it."""
    url, engine = pg_url
    slow = Receiver(delay=0.6)
    try:
        edge = server(url, "edge").start()
        processes.append(edge)
        source = create_source(edge.url, "Short Leases")
        destination = add_destination(edge.url, source["id"], "webhooks", {"url": slow.url})
        batch = make_batch(16, "lease")
        send_batches([edge.url], source["write_key"], [batch])
        for _ in range(2):
            queue_of_four = worker(url, 2)
            queue_of_four.args[1:1] = ["--concurrency", "1"]
            processes.append(queue_of_four.start())
        assert not slow.wait_for([e["messageId"] for e in batch], timeout=60)
        assert job_statuses(engine, destination["id"], {"delivered": 16}) == {"delivered": 16}
        twice = {m: n for m, n in slow.counts().items() if n > 1}
        assert not twice, explain_duplicates(engine, destination["id"], slow)
    finally:
        slow.close()


@pytest.mark.postgres
def test_sigterm_to_a_server_under_load_keeps_every_acknowledged_event(pg_url, processes):
    url, engine = pg_url
    edge = server(url, "edge").start()
    processes.append(edge)
    source = create_source(edge.url, "Stopping")
    acknowledged: list[str] = []
    refused: list[str] = []
    stop_sending = threading.Event()

    def send() -> None:
        with httpx.Client(auth=(source["write_key"], ""), timeout=10) as client:
            n = 0
            while not stop_sending.is_set():
                batch = make_batch(50, f"s{n}")
                n += 1
                try:
                    response = client.post(f"{edge.url}/v1/batch", json={"batch": batch})
                except httpx.TransportError:
                    refused.append(batch[0]["messageId"])
                    time.sleep(0.01)
                    continue
                if response.status_code == 200:
                    acknowledged.extend(e["messageId"] for e in batch)
                else:
                    refused.append(f"{response.status_code}")

    senders = [threading.Thread(target=send) for _ in range(4)]
    for thread in senders:
        thread.start()
    time.sleep(1.0)
    # uvicorn shuts down gracefully, then re-raises the signal: exit status 0 or "killed by SIGTERM".
    assert edge.stop(timeout=30) in (0, -signal.SIGTERM)
    time.sleep(0.3)
    stop_sending.set()
    for thread in senders:
        thread.join()
    print(f"{len(acknowledged)} events acknowledged before the server stopped; {len(refused)} requests refused after")
    assert len(acknowledged) >= 500 and refused
    with engine.connect() as conn:
        stored = set(conn.execute(select(events.c.message_id).where(events.c.source_id == source["id"])).scalars())
    assert set(acknowledged) <= stored


def test_an_unknown_role_is_refused_with_one_line():
    for argv, env in ((["serve", "--role", "worker"], {}), (["serve"], {"SWITCHBOARD_ROLE": "backend"})):
        result = subprocess.run([sys.executable, "-m", "server.cli", *argv], cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, **env}, timeout=30)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "edge" in result.stderr and "all" in result.stderr

"""Fast crash recovery: after kill -9 of a real `switchboard worker` or `switchboard serve` under
load, the acknowledged events it had leased are delivered within 15 s of the restart (they no
longer wait for its 60 s leases), on SQLite and PostgreSQL; with two workers, the survivor takes
over. The only duplicates are requests the dead process had sent without recording the answer,
and each is counted in ``redelivered_after_takeover``.

Also: migration 3 on a database from before it, and the heart-beat rule for a worker on another
machine (its counter stands still for ``stale_after`` seconds)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import httpx
import pytest
from sqlalchemy import inspect, select, text
from test_delivery_worker import start_worker

from delivery_flow import RunningService, append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.delivery.heartbeat import process_start
from server.store import delivery as store
from server.store import delivery_stats, migrations, open_store, workers
from server.store.engine import make_engine
from server.store.schema import metadata

pytestmark = pytest.mark.timeout(180)

RECOVERY_S = 15.0


def slow(record):
    time.sleep(0.02)
    return 200, {}, b"ok"


def first_arrivals(vendor: Vendor) -> dict[str, float]:
    seen: dict[str, float] = {}
    for record in vendor.snapshot():
        seen.setdefault(record.json()["messageId"], record.at)
    return seen


def duplicates(vendor: Vendor) -> int:
    ids = [r.json()["messageId"] for r in vendor.snapshot()]
    return len(ids) - len(set(ids))


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def settled_leases(engine, destination_id: int) -> list[dict]:
    """The killed worker's leased jobs, once they stop changing: on PostgreSQL a COMMIT the
    worker sent just before SIGKILL still completes in its server process a moment later."""
    before = None
    while True:
        held = [j for j in jobs(engine, destination_id) if j["lease_owner"] is not None]
        ids = sorted(j["id"] for j in held)
        if ids == before:
            return held
        before = ids
        time.sleep(0.5)


def test_kill_9_of_a_worker_then_restart_redelivers_within_seconds(db_url):
    engine = open_store(db_url)
    with Vendor(slow) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        sent = [make_event("track", event=f"E{i}", userId=f"u{i}") for i in range(400)]
        append(engine, source["id"], sent)
        first = start_worker(db_url, "--concurrency", "8")  # the default 60 s leases
        try:
            vendor.wait_for(60, timeout=60)
        finally:
            first.kill()  # SIGKILL: no cleanup, leases and heartbeat row left behind
            first.wait(10)
        held = settled_leases(engine, dest["id"])
        assert held, "the worker must be killed while it holds leases"
        restarted = time.monotonic()
        second = start_worker(db_url, "--concurrency", "8")
        try:
            wait_until(lambda: sum(j["status"] == store.DELIVERED for j in jobs(engine, dest["id"])) == 400,
                       timeout=60, what="all 400 delivered after the restart")
        finally:
            stop(second)
        arrivals = first_arrivals(vendor)
        doubled = duplicates(vendor)
    assert set(arrivals) == {e["messageId"] for e in sent}
    last = max(arrivals[j["message_id"]] for j in held)
    print(f"{len(held)} leased job(s) of the killed worker: the last arrived {last - restarted:.1f}s after the "
          f"restart; {doubled} duplicate(s)")
    assert last - restarted < RECOVERY_S
    redelivered = delivery_stats.redelivered_counts(engine, dest["id"]).get(dest["id"], 0)
    assert 0 < redelivered <= len(held) and doubled <= redelivered
    assert all(j["lease_owner"] is None for j in jobs(engine, dest["id"]))
    assert workers.workers(engine) == []  # the dead one's row taken over, the second's removed at SIGTERM
    engine.dispose()


def test_with_two_workers_the_survivor_takes_over_when_one_is_killed(db_url):
    engine = open_store(db_url)
    with Vendor(slow) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        sent = [make_event("track", event=f"E{i}", userId=f"u{i}") for i in range(500)]
        append(engine, source["id"], sent)
        victim = start_worker(db_url, "--concurrency", "4")
        survivor = start_worker(db_url, "--concurrency", "4")
        try:
            wait_until(lambda: len({o["owner"] for o in workers.workers(engine)}) == 2, timeout=60,
                       what="both workers heart-beating")
            wait_until(lambda: any(j["lease_owner"] for j in jobs(engine, dest["id"])
                                   if j["status"] in store.PENDING and j["lease_owner"]
                                   and str(victim.pid) in j["lease_owner"]), timeout=60,
                       what="the victim holding leases")
            victim.kill()
            victim.wait(10)
            killed = time.monotonic()
            held = [j for j in jobs(engine, dest["id"])
                    if j["lease_owner"] and str(victim.pid) in j["lease_owner"] and j["status"] in store.PENDING]
            wait_until(lambda: sum(j["status"] == store.DELIVERED for j in jobs(engine, dest["id"])) == 500,
                       timeout=60, what="all 500 delivered by the survivor")
        finally:
            victim.kill()
            stop(survivor)
        arrivals = first_arrivals(vendor)
        doubled = duplicates(vendor)
    assert set(arrivals) == {e["messageId"] for e in sent}
    if held:  # normally dozens; the victim may have finished its last lease just before the kill
        last = max(arrivals[j["message_id"]] for j in held)
        print(f"{len(held)} job(s) leased by the killed worker: the last arrived {last - killed:.1f}s after the kill; "
              f"{doubled} duplicate(s)")
        assert last - killed < RECOVERY_S
    assert doubled <= delivery_stats.redelivered_counts(engine, dest["id"]).get(dest["id"], 0)
    engine.dispose()


def test_kill_9_of_serve_under_load_then_restart_delivers_every_acknowledged_event(live_server_factory, db_url):
    engine = open_store(db_url)
    with Vendor(slow) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        server = live_server_factory(db_url)
        acknowledged: list[str] = []
        stopping = threading.Event()

        def load() -> None:  # clients keep sending until the server dies under them
            n = 0
            with httpx.Client(auth=(source["write_key"], ""), timeout=5) as client:
                while not stopping.is_set():
                    batch = [{"type": "track", "event": "Load", "userId": "u", "messageId": f"m-{n}-{i}"}
                             for i in range(10)]
                    n += 1
                    try:
                        answer = client.post(f"{server.url}/v1/batch", json={"batch": batch})
                    except httpx.HTTPError:
                        return
                    if answer.status_code == 200:
                        acknowledged.extend(e["messageId"] for e in batch)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            vendor.wait_for(100, timeout=60)
            wait_until(lambda: any(j["lease_owner"] for j in jobs(engine, dest["id"])), timeout=30,
                       what="the server holding leases")
        finally:
            server.kill()
            stopping.set()
            loader.join(10)
        held = [j for j in jobs(engine, dest["id"]) if j["lease_owner"] is not None and j["status"] in store.PENDING]
        restarted = time.monotonic()
        live_server_factory(db_url)
        wanted = set(acknowledged)
        wait_until(lambda: wanted <= set(first_arrivals(vendor)), timeout=60,
                   what="every acknowledged event delivered after the restart")
        arrivals = first_arrivals(vendor)
    assert len(wanted) >= 100
    late = [arrivals[j["message_id"]] - restarted for j in held if arrivals[j["message_id"]] > restarted]
    print(f"{len(wanted)} acknowledged; {len(held)} leased at the kill; the last of them arrived "
          f"{max(late, default=0):.1f}s after the restart")
    assert max(late, default=0) < RECOVERY_S
    engine.dispose()


def test_a_worker_on_another_machine_that_stops_beating_is_taken_over_after_stale_after(engine, catalog):
    with Vendor() as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": vendor.url + "/in"}})
        append(engine, source["id"], [make_event("track", event=f"E{i}") for i in range(5)])
        # What a worker elsewhere left behind: a heartbeat row whose counter no longer moves, and
        # leases on every job that would run for another minute.
        workers.beat(engine, "elsewhere:1:dead", {"host_key": "another-machine", "pid": 1, "pid_start": "1"})
        from server.delivery.router import route
        from server.store import fanout

        fanout.ensure_cursor(engine)
        fanout.fanout_pass(engine, lambda event, kind, dests: route(event, kind, True, dests, catalog),
                           fanout.GapTracker())
        claimed = store.claim(engine, dest["id"], "elsewhere:1:dead", 10, 60)
        assert len(claimed) == 5
        started = time.monotonic()
        with RunningService(engine, catalog, heartbeat_interval=0.2, stale_after=1.5):
            vendor.wait_for(5, timeout=20)
            took = time.monotonic() - started
            wait_until(lambda: all(j["status"] == store.DELIVERED for j in jobs(engine, dest["id"])), timeout=10,
                       what="recorded as delivered")
    assert 1.5 <= took < 5.0, took  # not before its counter stood still for stale_after; long before 60 s
    assert delivery_stats.redelivered_counts(engine, dest["id"]) == {dest["id"]: 5}
    assert all(j["takeovers"] == 1 for j in jobs(engine, dest["id"]))


def test_a_reaped_process_has_no_start_time_and_a_live_one_has():
    child = subprocess.Popen(["sleep", "30"])
    assert process_start(child.pid) not in (None, "")
    child.kill()
    child.wait(10)
    assert process_start(child.pid) is None
    assert process_start(os.getpid())


def test_migration_3_on_a_database_from_before_it(db_url):
    from server.store import workspace

    migrations._import_table_modules()
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn, tables=[t for t in metadata.sorted_tables if t.name != "delivery_workers"])
            conn.execute(text("ALTER TABLE delivery_jobs DROP COLUMN takeovers"))
            for number in (1, 2):
                conn.execute(migrations.schema_migrations.insert().values(
                    version=number, description="before", applied_at=workspace.now()))
        source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": "https://h.example/in"}})
        now = store.utcnow()
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO events (source_id, message_id, type, received_at, payload) "
                "VALUES (:s, 'm1', 'track', :t, '{}')"), {"s": source["id"], "t": now})
            event_id = conn.execute(text("SELECT max(id) FROM events")).scalar_one()
            conn.execute(text(
                "INSERT INTO delivery_jobs (destination_id, source_id, event_id, message_id, event_type, received_at,"
                " created_at, status, attempts, next_attempt_at) VALUES (:d, :s, :e, 'm1', 'track', :t, :t, 'queued',"
                " 0, :t)"), {"d": dest["id"], "s": source["id"], "e": event_id, "t": now})

        assert 3 in migrations.migrate(engine)
        assert "delivery_workers" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(select(store.delivery_jobs.c.takeovers)).scalars().all() == [0]
        assert migrations.migrate(engine) == []
    finally:
        engine.dispose()

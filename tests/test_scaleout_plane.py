"""The scale-out plane inside a running app: settings changes committed by another process
reach this process's ``notify.SETTINGS`` subscribers (the bundle cache's invalidation path)
within a second, once each; a rotated or deleted write key is announced as gone (-1)."""

from __future__ import annotations

import queue
import subprocess
import sys
import time

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.config import Config
from server.store.notify import parse_settings_payload
from server.store import events, notify, open_store, workspace

def run_elsewhere(url: str, code: str) -> str:
    """Run store code in another process (as another server would) and return its stdout."""
    script = f"from server.store import open_store, workspace\nengine = open_store({url!r})\n{code}"
    return subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def running_app(pg, catalog):
    url = pg.create_database()
    engine = open_store(url)
    app = create_app(Config(database_url=url, delivery_workers=False), engine=engine, catalog=catalog,
                     planes=["server.health", "server.scaleout"])
    seen: queue.Queue[tuple[float, tuple[int, str, int]]] = queue.Queue()
    unsubscribe = notify.SETTINGS.subscribe(lambda *change: seen.put((time.monotonic(), change)))
    with TestClient(app):
        assert app.state.notify_listener.wait_connected(10)
        yield url, engine, seen
    unsubscribe()
    engine.dispose()


def drain(seen: queue.Queue, wait: float = 0.5) -> list[tuple[int, str, int]]:
    time.sleep(wait)
    out = []
    while not seen.empty():
        out.append(seen.get()[1])
    return out


@pytest.mark.postgres
def test_a_change_in_another_process_is_announced_here_within_a_second(running_app):
    url, engine, seen = running_app
    source = workspace.create_source(engine, "Shop")
    assert drain(seen) == [(source["id"], source["write_key"], 1)]  # local change: once, not echoed

    started = time.monotonic()
    run_elsewhere(url, f"workspace.update_source(engine, {source['id']}, name='Shop 2')")
    finished = time.monotonic()
    at, change = seen.get(timeout=5)
    assert change == (source["id"], source["write_key"], 2)
    assert at - finished < 1.0, f"announced {at - finished:.3f}s after the other process committed"
    assert at > started
    assert drain(seen) == []


@pytest.mark.postgres
def test_rotated_and_deleted_keys_are_announced_as_gone(running_app):
    url, engine, seen = running_app
    source = workspace.create_source(engine, "Blog")
    drain(seen)
    new_key = run_elsewhere(url, f"print(workspace.rotate_write_key(engine, {source['id']})['write_key'])").strip()
    assert sorted(drain(seen, 1.0)) == sorted([(source["id"], source["write_key"], -1), (source["id"], new_key, 2)])
    run_elsewhere(url, f"workspace.delete_source(engine, {source['id']})")
    assert drain(seen, 1.0) == [(source["id"], new_key, -1)]


@pytest.mark.postgres
def test_events_appended_by_another_process_wake_this_ones_readers(running_app):
    url, engine, _ = running_app
    woken: queue.Queue[int] = queue.Queue()
    unsubscribe = notify.EVENTS.subscribe(woken.put)
    try:
        source = workspace.create_source(engine, "Log")
        run_elsewhere(url, (
            "from datetime import datetime, timezone\n"
            "from server.store import events\n"
            f"rows = events.rows_for({source['id']}, datetime.now(timezone.utc), "
            "[{'messageId': f'm{i}', 'type': 'track', 'event': 'E'} for i in range(3)])\n"
            "assert events.append(engine, rows, dedupe_window=60) == [True] * 3\n"
        ))
        finished = time.monotonic()
        max_id = woken.get(timeout=5)
        assert time.monotonic() - finished < 1.0
        assert max_id == max(e["id"] for e in events.read_after(engine, 0))
    finally:
        unsubscribe()


@pytest.mark.postgres
def test_after_its_listener_reconnects_every_source_is_announced(running_app):
    """Notifications sent while the LISTEN connection was down are lost: after reconnecting, the
    plane treats every source as changed (caches rebuild) and wakes the event readers."""
    url, engine, seen = running_app
    first = workspace.create_source(engine, "One")
    second = workspace.create_source(engine, "Two")
    drain(seen)
    woken: queue.Queue[int] = queue.Queue()
    unsubscribe = notify.EVENTS.subscribe(woken.put)
    try:
        with engine.begin() as conn:
            killed = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'switchboard-notify' AND datname = current_database()").scalar_one()
        assert killed == 1
        assert woken.get(timeout=10) == 0  # "there may be new events: read the log"
        assert sorted(drain(seen)) == [(first["id"], first["write_key"], 1), (second["id"], second["write_key"], 1)]
    finally:
        unsubscribe()


def test_settings_payloads_parse_strictly():
    assert parse_settings_payload("12:abc-_Z:7") == (12, "abc-_Z", 7)
    assert parse_settings_payload("12:abc:-1") == (12, "abc", -1)
    assert parse_settings_payload("12:a:b:3") == (12, "a:b", 3)
    for bad in ("", "12", "12:abc", "x:abc:1", "12::1", "12:abc:x"):
        assert parse_settings_payload(bad) is None, bad

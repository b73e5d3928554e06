"""History replay queueing in bounded, resumable chunks (server/store/replay_queue.py and the
workers' server/delivery/replay_queuer.py), on real SQLite and PostgreSQL: progress per chunk,
a replay whose queueing was killed (kill -9) mid-chunk is finished by a worker exactly once per
event, and two processes' steps racing for the same chunk commit it once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from delivery_flow import RunningService, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.delivery.history import replay_routes, start_replay
from server.store import delivery as store
from server.store import events, replay_queue, replays, workspace
from server.store.engine import read_only
from test_filters_replay import hook, store_cursor

ROOT = Path(__file__).resolve().parent.parent
SINCE = datetime.now(timezone.utc) - timedelta(hours=2)


def _history(engine, count: int, url: str = "http://127.0.0.1:9/live"):
    """A source whose log holds ``count`` events from an hour ago, all fanned out already, and
    a new destination (``url``) to replay them to."""
    source, _ = source_with(engine, hook("http://127.0.0.1:9/live"))
    when = datetime.now(timezone.utc) - timedelta(hours=1)
    items = [make_event("track", event="Old", properties={"n": n}) for n in range(count)]
    assert all(events.append(engine, events.rows_for(source["id"], when, items), dedupe_window=86400))
    store_cursor(engine)
    dest = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=True,
                                     settings={"url": url})
    return source, dest, items


def _marks(engine, replay_id: int) -> dict[str, int]:
    with read_only(engine) as conn:
        return dict(conn.execute(select(store.delivery_cursors.c.name, store.delivery_cursors.c.event_id)
                                 .where(store.delivery_cursors.c.name.like(f"replay:{replay_id}%"))).all())


def _one_job_per_event(engine, dest_id: int, count: int) -> list[dict]:
    found = jobs(engine, dest_id)
    assert len(found) == len({j["event_id"] for j in found}) == count
    return found


def test_a_large_window_is_queued_in_chunks_with_progress(engine, catalog, monkeypatch):
    _, dest, _ = _history(engine, 1_250)
    monkeypatch.setattr(replay_queue, "SYNC_EVENTS", 500)
    answer = start_replay(engine, catalog, dest["id"], since=SINCE, until=None, rate=100, actor="t")
    assert answer["queued"] == 500  # the request queued its first chunk; the workers do the rest
    replay_id = answer["replay_id"]
    row = replays.get_replay(engine, replay_id)
    assert row["state"] == "queuing" and row["pending"] == 500
    first = sorted(j["event_id"] for j in jobs(engine, dest["id"]))
    assert _marks(engine, replay_id)[f"replay:{replay_id}"] == first[-1]  # progress = last event considered

    routes = replay_routes(engine, catalog, dest["id"])
    step = replay_queue.queue_step(engine, replay_id, routes, 100)
    assert step.more and replays.get_replay(engine, replay_id)["queued"] == 1_000
    step = replay_queue.queue_step(engine, replay_id, routes, 100)
    assert not step.more  # a short chunk is the last: the replay is queued, its marks are gone
    row = replays.get_replay(engine, replay_id)
    assert (row["state"], row["queued"]) == ("queued", 1_250) and _marks(engine, replay_id) == {}
    assert not replay_queue.queue_step(engine, replay_id, routes, 100).more
    due = [j["next_attempt_at"] for j in sorted(_one_job_per_event(engine, dest["id"], 1_250), key=lambda j: j["event_id"])]
    # One release schedule across the chunks: ticks of rate × TICK_S jobs (100 a second), TICK_S apart.
    per_tick, ticks = round(100 * replay_queue.TICK_S), sorted(set(due))
    assert per_tick > 1 and [due.count(t) for t in ticks] == [per_tick] * (1_250 // per_tick)
    assert {round((b - a).total_seconds(), 6) for a, b in zip(ticks, ticks[1:])} == {replay_queue.TICK_S}
    assert row["release_until"] == due[-1]


_KILLED_MID_CHUNK = textwrap.dedent("""
    import os, signal, sys
    from datetime import datetime
    from server.catalog import load_catalog
    from server.delivery.history import replay_routes
    from server.store import open_store, replay_queue
    url, dest_id, since = sys.argv[1], int(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
    engine = open_store(url)
    inner, seen = replay_routes(engine, load_catalog(), dest_id), []

    def routes(payload, event_type):
        seen.append(1)
        if len(seen) == 700:  # in the middle of the second chunk
            os.kill(os.getpid(), signal.SIGKILL)
        return inner(payload, event_type)

    replay_queue.queue_replay(engine, dest_id, since=since, until=None, types=None, event_names=None,
                              routes=routes, rate=1000, actor="t", sync_events=10**6)
""")


def test_queueing_killed_mid_chunk_is_finished_by_a_worker_exactly_once(engine, catalog, db_url):
    with Vendor() as vendor:
        _, dest, items = _history(engine, 1_250, vendor.url + "/new")
        killed = subprocess.run([sys.executable, "-c", _KILLED_MID_CHUNK, db_url, str(dest["id"]), SINCE.isoformat()],
                                cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert killed.returncode == -9, killed.stderr
        (row,) = replays.list_replays(engine, dest["id"])
        assert (row["state"], row["queued"]) == ("queuing", 500)  # the first chunk committed, the second not
        assert len(jobs(engine, dest["id"])) == 500
        with RunningService(engine, catalog, replay_rate=1000):  # a worker starting continues it
            got = vendor.wait_for(1_250)
            wait_until(lambda: replays.get_replay(engine, row["id"])["delivered"] == 1_250, what="replay delivered")
        row = replays.get_replay(engine, row["id"])
        assert (row["state"], row["queued"], row["pending"]) == ("queued", 1_250, 0)
        sent = [r.json()["messageId"] for r in got]
        assert sorted(sent) == sorted(i["messageId"] for i in items)  # each event once, none twice
        assert len(vendor.snapshot()) == 1_250
    assert all(j["replay_id"] == row["id"] for j in _one_job_per_event(engine, dest["id"], 1_250))


def test_steps_racing_for_the_same_chunk_commit_it_once(engine, catalog):
    _, dest, _ = _history(engine, 1_000)
    replay_id = replay_queue.create_replay(engine, dest["id"], since=SINCE, until=None, types=None,
                                           event_names=None, actor="t")
    routes = replay_routes(engine, catalog, dest["id"])
    errors: list[BaseException] = []

    def stepper() -> None:
        try:
            while replay_queue.queue_step(engine, replay_id, routes, 1000, batch=100).more:
                pass
        except BaseException as exc:  # an IntegrityError would mean a chunk was queued twice
            errors.append(exc)

    threads = [threading.Thread(target=stepper) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    row = replays.get_replay(engine, replay_id)
    assert (row["state"], row["queued"]) == ("queued", 1_000)
    _one_job_per_event(engine, dest["id"], 1_000)


def test_replaying_a_window_again_requeues_every_job_on_the_release_schedule(engine, catalog):
    """A second replay of the same window to the same destination sends every event again: the
    finished jobs are queued anew (one statement per release tick), due in ticks at the rate."""
    with Vendor() as vendor:
        _, dest, items = _history(engine, 120, vendor.url + "/new")
        with RunningService(engine, catalog, replay_rate=1000):
            first = start_replay(engine, catalog, dest["id"], since=SINCE, until=None, rate=1000, actor="t")
            vendor.wait_for(120)
            wait_until(lambda: replays.get_replay(engine, first["replay_id"])["delivered"] == 120, what="first replay")
        before = datetime.now(timezone.utc)
        second = replay_queue.queue_replay(engine, dest["id"], since=SINCE, until=None, types=None, event_names=None,
                                           routes=replay_routes(engine, catalog, dest["id"]), rate=200, actor="t")
        assert second["queued"] == 120
        queued = jobs(engine, dest["id"])
        assert {j["status"] for j in queued} == {store.QUEUED}
        assert {j["replay_id"] for j in queued} == {second["id"]}
        due = sorted({j["next_attempt_at"] for j in queued})
        # 10 jobs due together every 50 ms at 200/s, from now on: twelve ticks over 0.6 s.
        assert len(due) == 12 and before < due[0] and (due[-1] - due[0]).total_seconds() == pytest.approx(0.55, abs=0.01)
        assert all(sum(j["next_attempt_at"] == d for j in queued) == 10 for d in due)
        with RunningService(engine, catalog, replay_rate=200):
            got = vendor.wait_for(240)
            wait_until(lambda: replays.get_replay(engine, second["id"])["delivered"] == 120, what="second replay")
        sent = sorted(r.json()["messageId"] for r in got)
        assert sent == sorted(i["messageId"] for i in items * 2)  # each event once per replay
    _one_job_per_event(engine, dest["id"], 120)

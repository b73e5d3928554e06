"""Alert rule evaluation on a real store: a rule fires once and resolves once, however many passes
and however many evaluators race; each kind measures what docs/alerts.md says."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest

from server.alerts.evaluator import Evaluator
from server.config import Config
from server.store import alerts as store
from server.store import events, open_store
from server.store.delivery import delivery_jobs, write_transaction
from tests.alerts_support import age_attempts, attempts, failure_rule, workspace_with
from tests.delivery_vendor import Vendor


@pytest.fixture
def receiver():
    with Vendor() as vendor:
        yield vendor


def evaluator(engine, catalog, db_url, name="a") -> Evaluator:
    config = Config(database_url=db_url, allow_private_egress=True, alert_interval_s=0.05)
    return Evaluator(engine, catalog, config, name=name)


def run(ev: Evaluator) -> list[int]:
    return asyncio.run(ev.run_once())


def kinds(engine, rule_id: int) -> list[str]:
    return [e["kind"] for e in reversed(store.history(engine, rule_id))]


def test_failure_rate_fires_once_and_resolves_once(engine, catalog, db_url, receiver):
    ws = workspace_with(engine, receiver.url + "/alerts")
    rule = failure_rule(engine, ws)
    ev = evaluator(engine, catalog, db_url)
    assert run(ev) == []  # no attempts yet: nothing to say
    attempts(engine, ws["watched"]["id"], ["retry", "retry", "dead", "delivered"])  # 75 % failed
    assert len(run(ev)) == 1
    assert run(ev) == [] and run(ev) == []  # still failing: no second firing
    assert store.get_rule(engine, rule["id"])["state"] == store.FIRING
    age_attempts(engine, ws["watched"]["id"], 600)  # the failures leave the 5 min window
    attempts(engine, ws["watched"]["id"], ["delivered"] * 3)
    assert len(run(ev)) == 1
    assert run(ev) == []
    assert kinds(engine, rule["id"]) == ["firing", "resolved"]
    got = receiver.wait_for(2)
    assert [r.json()["properties"]["state"] for r in got] == ["firing", "resolved"]
    assert len(receiver.snapshot()) == 2
    assert got[0].json()["event"] == "Switchboard Alert"
    text = got[0].json()["properties"]["text"]
    assert f"75% of 4 delivery attempts to Site → webhooks #{ws['watched']['id']} failed in the last 5 min" in text
    assert all(e["notify_status"] == "sent" for e in store.history(engine, rule["id"]))


def test_threshold_is_exclusive_and_disabled_rules_are_not_evaluated(engine, catalog, db_url, receiver):
    ws = workspace_with(engine, receiver.url)
    rule = failure_rule(engine, ws)
    attempts(engine, ws["watched"]["id"], ["retry", "delivered"])  # exactly 50 %
    ev = evaluator(engine, catalog, db_url)
    assert run(ev) == []
    assert store.get_rule(engine, rule["id"])["last_value"] == 50.0
    store.update_rule(engine, rule["id"], {"enabled": False}, actor="test")
    attempts(engine, ws["watched"]["id"], ["dead"] * 10)
    assert run(ev) == [] and store.history(engine, rule["id"]) == []


def _race(engine_a, engine_b, catalog, db_url, rounds: int) -> list[int]:
    """Both evaluators run a pass at the same moment, ``rounds`` times; their transitions."""
    made: list[int] = []
    a, b = evaluator(engine_a, catalog, db_url, "a"), evaluator(engine_b, catalog, db_url, "b")
    for _ in range(rounds):
        barrier = threading.Barrier(2)

        def go(ev):
            barrier.wait()
            made.extend(run(ev))

        threads = [threading.Thread(target=go, args=(ev,)) for ev in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    return made


def test_two_evaluators_racing_on_one_store_fire_once_and_resolve_once(engine, catalog, db_url, receiver):
    ws = workspace_with(engine, receiver.url)
    rule = failure_rule(engine, ws)
    other = open_store(db_url)
    try:
        attempts(engine, ws["watched"]["id"], ["retry"] * 5)
        assert len(_race(engine, other, catalog, db_url, 5)) == 1
        age_attempts(engine, ws["watched"]["id"], 600)
        assert len(_race(engine, other, catalog, db_url, 5)) == 1
    finally:
        other.dispose()
    history = store.history(engine, rule["id"])
    assert sorted(e["kind"] for e in history) == ["firing", "resolved"]
    receiver.wait_for(2)
    assert sorted(r.json()["properties"]["state"] for r in receiver.snapshot()) == ["firing", "resolved"]


def test_dead_letters_fire_when_jobs_die_in_the_window(engine, catalog, db_url, receiver):
    ws = workspace_with(engine, receiver.url)
    dest = ws["watched"]["id"]
    rule = failure_rule(engine, ws, kind="dead_letters", threshold=0, window_minutes=10)
    ev = evaluator(engine, catalog, db_url)
    assert run(ev) == []
    now = datetime.now(timezone.utc)
    _job(engine, dest, 1, "dead", finished_at=now)
    assert len(run(ev)) == 1 and run(ev) == []
    with write_transaction(engine) as conn:  # the dead letter is older than the window now
        conn.execute(delivery_jobs.update().values(finished_at=now - timedelta(minutes=11)))
    assert len(run(ev)) == 1
    assert kinds(engine, rule["id"]) == ["firing", "resolved"]


def test_delivery_lag_is_the_oldest_undelivered_jobs_age(engine, catalog, db_url, receiver):
    ws = workspace_with(engine, receiver.url)
    dest = ws["watched"]["id"]
    rule = failure_rule(engine, ws, kind="delivery_lag", threshold=60)
    ev = evaluator(engine, catalog, db_url)
    now = datetime.now(timezone.utc)
    _job(engine, dest, 1, "retrying", created_at=now - timedelta(seconds=30))
    assert run(ev) == []
    assert 29 <= store.get_rule(engine, rule["id"])["last_value"] < 60
    _job(engine, dest, 2, "queued", created_at=now - timedelta(seconds=120))
    assert len(run(ev)) == 1
    assert store.get_rule(engine, rule["id"])["last_value"] >= 120
    with write_transaction(engine) as conn:
        conn.execute(delivery_jobs.update().values(status="delivered"))
    assert len(run(ev)) == 1
    assert kinds(engine, rule["id"]) == ["firing", "resolved"]


def test_no_events_fires_for_a_silent_source_and_resolves_on_the_next_event(engine, catalog, db_url, receiver):
    ws = workspace_with(engine, receiver.url)
    source = ws["source"]["id"]
    rule = failure_rule(engine, ws, kind="no_events", source_id=source, window_minutes=1)
    assert rule["destination_id"] is None
    ev = evaluator(engine, catalog, db_url)
    _event(engine, source, "m1", datetime.now(timezone.utc) - timedelta(minutes=2))
    assert len(run(ev)) == 1
    assert "source Site last received an event 1" in store.history(engine, rule["id"])[0]["message"]
    _event(engine, source, "m2", datetime.now(timezone.utc))
    assert len(run(ev)) == 1 and run(ev) == []
    assert kinds(engine, rule["id"]) == ["firing", "resolved"]


def test_a_failing_notification_is_recorded_and_the_evaluator_keeps_going(engine, catalog, db_url):
    with Vendor(lambda r: (500, {}, b"down")) as broken:
        ws = workspace_with(engine, broken.url)
        rule = failure_rule(engine, ws)
        attempts(engine, ws["watched"]["id"], ["dead"])
        ev = evaluator(engine, catalog, db_url)
        assert len(run(ev)) == 1
    [event] = store.history(engine, rule["id"])
    assert event["kind"] == "firing" and event["notify_status"] == "failed" and "500" in event["notify_error"]
    assert run(ev) == []  # fired once; a failed notification is not a reason to fire again


def test_the_evaluator_loop_runs_every_interval(engine, catalog, db_url, receiver):
    ws = workspace_with(engine, receiver.url)
    failure_rule(engine, ws)
    attempts(engine, ws["watched"]["id"], ["dead"])

    async def scenario():
        ev = evaluator(engine, catalog, db_url).start()
        try:
            for _ in range(400):
                if receiver.snapshot():
                    break
                await asyncio.sleep(0.05)
        finally:
            await ev.stop()

    asyncio.run(scenario())
    assert [r.json()["properties"]["state"] for r in receiver.snapshot()] == ["firing"]


def _job(engine, destination_id, event_id, status, *, created_at=None, finished_at=None):
    now = datetime.now(timezone.utc)
    with write_transaction(engine) as conn:
        conn.execute(delivery_jobs.insert().values(
            destination_id=destination_id, source_id=1, event_id=event_id, message_id=f"m{event_id}",
            event_type="track", received_at=created_at or now, created_at=created_at or now, status=status,
            attempts=1, next_attempt_at=now, finished_at=finished_at))


def _event(engine, source_id, message_id, at):
    rows = events.rows_for(source_id, at, [{"type": "track", "event": "x", "messageId": message_id}])
    events.append(engine, rows, dedupe_window=1)

"""Three ``switchboard worker`` processes on one PostgreSQL, each with its own alert evaluator
every 0.2 s: a failing destination's rule notifies the receiver once when it fires and once when
it resolves, and the history holds one row of each (the conditional UPDATE is the claim)."""

from __future__ import annotations

import time

import pytest
from scaleout_cluster import worker

from server.store import alerts as store
from server.store import open_store
from tests.alerts_support import age_attempts, attempts, failure_rule, workspace_with
from tests.delivery_vendor import Vendor

pytestmark = pytest.mark.postgres


def test_workers_on_one_postgresql_fire_once_and_resolve_once(pg):
    url = pg.create_database()
    engine = open_store(url)
    processes = []
    try:
        with Vendor() as receiver:
            ws = workspace_with(engine, receiver.url)
            rule = failure_rule(engine, ws)
            env = {"SWITCHBOARD_ALERT_INTERVAL_S": "0.2", "SWITCHBOARD_ALLOW_PRIVATE_EGRESS": "true"}
            processes = [worker(url, **env).start() for _ in range(3)]
            attempts(engine, ws["watched"]["id"], ["retry"] * 4)
            receiver.wait_for(1, timeout=30)
            time.sleep(1.5)  # several passes of every worker while it still fails
            assert [r.json()["properties"]["state"] for r in receiver.snapshot()] == ["firing"]
            age_attempts(engine, ws["watched"]["id"], 600)
            receiver.wait_for(2, timeout=30)
            time.sleep(1.5)
            assert [r.json()["properties"]["state"] for r in receiver.snapshot()] == ["firing", "resolved"]
        history = store.history(engine, rule["id"])
        assert sorted(e["kind"] for e in history) == ["firing", "resolved"]
        assert all(e["notify_status"] == "sent" for e in history)
    finally:
        for process in processes:
            process.stop()
        engine.dispose()

"""A sync killed with SIGKILL in the middle of a load completes on the next run with every
event loaded exactly once: tables committed before the kill are deduped on ``id``, the
cursor had not moved, and the dead sync shows as interrupted in the history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone

from test_warehouse_support import build_warehouse, make_event, wh  # noqa: F401

from server.store import warehouse as store
from server.store import workspace
from server.warehouse.naming import event_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = 30_000


def _events() -> list[dict]:
    items = []
    for i in range(EVENTS):
        if i % 10 < 3:
            items.append(make_event("page", messageId=f"m{i}", name=f"Page {i % 7}", properties={"n": i}))
        elif i % 10 < 8:
            items.append(make_event("track", messageId=f"m{i}", event=f"Event {i % 5}", properties={"n": i}))
        else:
            items.append(make_event("identify", messageId=f"m{i}", userId=f"u{i % 300}", traits={"n": i}))
    return items


def _expected(items: list[dict]) -> Counter:
    expected: Counter = Counter()
    users = set()
    for e in items:
        if e["type"] == "page":
            expected["pages"] += 1
        elif e["type"] == "track":
            expected["tracks"] += 1
            expected[event_table(e["event"])] += 1
        else:
            expected["identifies"] += 1
            users.add(e["userId"])
    expected["users"] = len(users)
    return expected


def _loaded(wh) -> Counter:
    return Counter({t: wh.count(t) for t in wh.tables()})


def test_sync_killed_mid_load_completes_on_restart_without_loss_or_duplicates(wh):
    wh.emit(*_events(), received_at=datetime.now(timezone.utc))
    # One batch for everything, so the kill lands between per-table commits of that batch.
    workspace.update_destination(wh.engine, wh.destination["id"],
                                 settings=dict(wh.destination["settings"], batch_rows=EVENTS))
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": wh.config.database_url, "SWITCHBOARD_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "warehouse", "sync", str(wh.destination["id"])],
                               env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Kill as soon as the first table of the batch has committed.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if any(wh.count(t) for t in wh.tables()):
                break
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()

    partial = _loaded(wh)
    expected = _expected(_events())
    assert 0 < sum(partial.values()) < sum(expected.values())  # really killed mid-load
    assert store.get_cursor(wh.engine, wh.destination["id"]) == 0

    sync = wh.sync()
    assert sync["error"] is None and sync["events"] == EVENTS
    assert _loaded(wh) == expected
    ids = wh.query("SELECT count(DISTINCT id), count(*) FROM tracks")[0]
    assert ids == (expected["tracks"], expected["tracks"])
    assert store.get_cursor(wh.engine, wh.destination["id"]) == EVENTS
    history = store.list_syncs(wh.engine, wh.destination["id"])
    assert [s["trigger"] for s in history] == ["manual", "cli"]
    assert history[1]["error"].startswith("interrupted")

    assert wh.sync()["events"] == 0  # and nothing left over

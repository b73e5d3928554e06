"""A deletion interrupted by kill -9 of a real ``switchboard serve`` finishes after the restart,
from where it got to (the counts are exact: each batch's progress commits with the batch), on
SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from delivery_flow import append, wait_until
from delivery_vendor import make_event
from server.store import regulations, tokens, workspace
from test_privacy_regulations import logged

pytestmark = pytest.mark.timeout(180)


def test_a_deletion_killed_mid_way_finishes_after_restart(db_url, engine, live_server_factory):
    source = workspace.create_source(engine, "Site")
    other = workspace.create_source(engine, "Other")
    token = tokens.create_token(engine, "test")
    for _ in range(6):
        append(engine, source["id"], [make_event("track", event="Viewed", userId="ada" if i % 2 else "bob")
                                      for i in range(500)])
    append(engine, other["id"], [make_event("track", event="Viewed", userId="ada") for _ in range(50)])
    env = {"SWITCHBOARD_REGULATION_BATCH_SIZE": "10"}
    server = live_server_factory(db_url, **env)
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{server.url}/api/v1/regulations", headers=headers,
                        json={"type": "delete", "user_ids": ["ada"], "source_ids": [source["id"]]})
    assert answer.status_code == 201, answer.text
    regulation_id = answer.json()["id"]
    wait_until(lambda: (regulations.get(engine, regulation_id)["counts"].get("events") or 0) >= 200, timeout=60,
               what="the deletion under way")
    server.kill()  # SIGKILL: no shutdown, the lease stays
    interrupted = regulations.get(engine, regulation_id)
    assert interrupted["status"] == "running" and 0 < interrupted["counts"]["events"] < 1500, interrupted
    assert _count(logged(engine))["ada"] > 50  # some of the source's are still there

    restarted = live_server_factory(db_url, **env)
    done = wait_until(lambda: (r := httpx.get(f"{restarted.url}/api/v1/regulations/{regulation_id}",
                                              headers=headers).json())["status"] in ("finished", "failed") and r,
                      timeout=90, what="the deletion to finish after the restart")
    assert done["status"] == "finished", done
    assert done["counts"]["events"] == 1500  # every one exactly once, across the two processes
    left = logged(engine)
    # ada's events in the other source stay: the regulation named one source.
    assert _count(left) == {"ada": 50, "bob": 1500}


def _count(events: list[dict]) -> dict:
    found: dict = {}
    for event in events:
        found[event.get("userId")] = found.get(event.get("userId"), 0) + 1
    return found
